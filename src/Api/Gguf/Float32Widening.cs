using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SlothSharp.Gguf;

/// <summary>
/// float32, bfloat16 or float16 values in memory (a tensor's storage, a memory-mapped safetensors shard) to a float32
/// span, in parallel over chunks. Widening is exact (bf16: the 16 bits become the upper half, NaN payloads included;
/// f16: IEEE half to single), so the result equals torch's <c>to(float32)</c> bit for bit.
/// </summary>
internal static class Float32Widening
{
    public enum Source { F32, BF16, F16 }

    private const int Chunk = 1 << 20;

    /// <summary>Converts <paramref name="destination"/>.Length values starting at <paramref name="source"/>.</summary>
    public static unsafe void Convert(nint source, Source dtype, Span<float> destination)
    {
        var n = destination.Length;
        if (n == 0) return;
        fixed (float* dst = destination)
        {
            var dstPtr = (nint)dst;
            Parallel.For(0, (n + Chunk - 1) / Chunk, k =>
            {
                var start = k * Chunk;
                var len = Math.Min(Chunk, n - start);
                var to = new Span<float>((float*)dstPtr + start, len);
                switch (dtype)
                {
                    case Source.F32:
                        new ReadOnlySpan<float>((float*)source + start, len).CopyTo(to);
                        break;
                    case Source.BF16:
                        WidenBf16(new ReadOnlySpan<ushort>((ushort*)source + start, len), MemoryMarshal.Cast<float, uint>(to));
                        break;
                    default:
                        var halves = new ReadOnlySpan<Half>((Half*)source + start, len);
                        for (var i = 0; i < len; i++) to[i] = (float)halves[i];
                        break;
                }
            });
        }
    }

    private static void WidenBf16(ReadOnlySpan<ushort> src, Span<uint> dst)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 16 <= src.Length; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Create(src.Slice(i, 16)));
                (lo << 16).CopyTo(dst.Slice(i, 8));
                (hi << 16).CopyTo(dst.Slice(i + 8, 8));
            }
        for (; i < src.Length; i++) dst[i] = (uint)src[i] << 16;
    }
}
