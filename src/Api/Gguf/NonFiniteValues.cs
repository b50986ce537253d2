using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SlothSharp.Gguf;

/// <summary>
/// Counts the NaN and ±infinity values of a float32 span (the exporter's check that a checkpoint is not broken before
/// it quantizes it: a diverged fine-tune or a bad merge leaves NaNs, and quantized NaN blocks make a GGUF whose every
/// answer is garbage). A value is non-finite when its exponent bits are all ones. In parallel over chunks, 8 floats a
/// vector step; the first non-finite index is the smallest over the chunks.
/// </summary>
internal static class NonFiniteValues
{
    private const int Chunk = 1 << 20;
    private const uint ExponentMask = 0x7F800000u;

    /// <summary>How many values of <paramref name="values"/> are NaN or ±infinity, and the index of the first (-1 if none).</summary>
    public static (long Count, long First) Find(ReadOnlySpan<float> values)
    {
        var n = values.Length;
        if (n == 0) return (0, -1);
        var bits = MemoryMarshal.Cast<float, uint>(values);
        if (n <= Chunk) return Scan(bits, 0);
        unsafe
        {
            fixed (uint* p = bits)
            {
                var ptr = (nint)p;
                var chunks = (n + Chunk - 1) / Chunk;
                var counts = new long[chunks];
                var firsts = new long[chunks];
                Parallel.For(0, chunks, k =>
                {
                    var start = k * Chunk;
                    (counts[k], firsts[k]) = Scan(new ReadOnlySpan<uint>((uint*)ptr + start, Math.Min(Chunk, n - start)), start);
                });
                long count = 0, first = -1;
                for (var k = 0; k < chunks; k++)
                {
                    count += counts[k];
                    if (first < 0 && firsts[k] >= 0) first = firsts[k];
                }
                return (count, first);
            }
        }
    }

    private static (long Count, long First) Scan(ReadOnlySpan<uint> bits, long offset)
    {
        long count = 0, first = -1;
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create(ExponentMask);
            for (; i + 8 <= bits.Length; i += 8)
            {
                var hit = Vector256.Equals(Vector256.Create(bits.Slice(i, 8)) & mask, mask);
                if (hit == Vector256<uint>.Zero) continue;
                for (var j = 0; j < 8; j++)
                    if (hit[j] != 0)
                    {
                        count++;
                        if (first < 0) first = offset + i + j;
                    }
            }
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & ExponentMask) == ExponentMask)
            {
                count++;
                if (first < 0) first = offset + i;
            }
        return (count, first);
    }
}
