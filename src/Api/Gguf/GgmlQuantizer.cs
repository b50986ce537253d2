using System.Runtime.InteropServices;

namespace SlothSharp.Gguf;

/// <summary>
/// Converts float32 rows to ggml's storage types, bit-identical to ggml's reference quantizers (the ones
/// <c>llama-quantize</c> uses when no importance matrix is given): F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1 (the last two
/// are llama.cpp's fallbacks for K-quants on rows that are not a multiple of 256) and the K-quants Q4_K, Q5_K, Q6_K.
/// Rows are independent, so a tensor is quantized in parallel over rows.
/// </summary>
public static class GgmlQuantizer
{
    /// <summary>Quantizes a row-major float32 matrix of rows of <paramref name="rowLength"/> elements.</summary>
    /// <returns>The ggml bytes: rows back to back, each <see cref="GgmlTypeInfo.RowBytes"/> long.</returns>
    public static byte[] Quantize(ReadOnlySpan<float> data, long rowLength, GgmlType type)
    {
        if (rowLength <= 0 || data.Length % rowLength != 0)
            throw new ArgumentException($"{data.Length} elements are not whole rows of {rowLength}");
        var output = new byte[checked(data.Length / rowLength * GgmlTypeInfo.RowBytes(type, rowLength))];
        Quantize(data, rowLength, type, output);
        return output;
    }

    /// <summary>Quantizes a row-major float32 matrix into <paramref name="destination"/>, which must hold exactly
    /// its bytes (rows × <see cref="GgmlTypeInfo.RowBytes"/>): lets a caller reuse one buffer across tensors.</summary>
    public static void Quantize(ReadOnlySpan<float> data, long rowLength, GgmlType type, Span<byte> destination)
    {
        if (rowLength <= 0 || data.Length % rowLength != 0)
            throw new ArgumentException($"{data.Length} elements are not whole rows of {rowLength}");
        var rowBytes = GgmlTypeInfo.RowBytes(type, rowLength);
        var rows = data.Length / rowLength;
        if (destination.Length != rows * rowBytes)
            throw new ArgumentException($"{rows} rows of {type} take {rows * rowBytes} bytes; the destination holds {destination.Length}", nameof(destination));
        unsafe
        {
            fixed (float* src = data)
            fixed (byte* dst = destination)
            {
                var srcPtr = (nint)src;
                var dstPtr = (nint)dst;
                // Chunks of rows, not single rows: the per-row work of a 64-wide row is too small to schedule alone.
                var rowsPerChunk = Math.Max(1, (int)(65536 / rowLength));
                var chunks = (int)((rows + rowsPerChunk - 1) / rowsPerChunk);
                Parallel.For(0, chunks, c =>
                {
                    var first = (long)c * rowsPerChunk;
                    var last = Math.Min(rows, first + rowsPerChunk);
                    for (var r = first; r < last; r++)
                    {
                        var x = new ReadOnlySpan<float>((float*)srcPtr + r * rowLength, (int)rowLength);
                        QuantizeRow(x, new Span<byte>((byte*)dstPtr + r * rowBytes, (int)rowBytes), type);
                    }
                });
            }
        }
    }

    /// <summary>Quantizes one row into <paramref name="dst"/> (exactly the row's byte size).</summary>
    public static void QuantizeRow(ReadOnlySpan<float> x, Span<byte> dst, GgmlType type)
    {
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(x).CopyTo(dst); break;
            case GgmlType.F16:
                for (var i = 0; i < x.Length; i++) WriteHalf(dst, 2 * i, x[i]);
                break;
            case GgmlType.BF16:
                for (var i = 0; i < x.Length; i++) BitConverter.TryWriteBytes(dst[(2 * i)..], ToBf16(x[i]));
                break;
            case GgmlType.Q8_0: LegacyQuants.Q8_0(x, dst); break;
            case GgmlType.Q4_0: LegacyQuants.Q4_0(x, dst); break;
            case GgmlType.Q5_0: LegacyQuants.Q5_0(x, dst); break;
            case GgmlType.Q5_1: LegacyQuants.Q5_1(x, dst); break;
            case GgmlType.Q4_K: KQuants.Q4_K(x, dst); break;
            case GgmlType.Q5_K: KQuants.Q5_K(x, dst); break;
            case GgmlType.Q6_K: KQuants.Q6_K(x, dst); break;
            default: throw new ArgumentException($"SlothSharp cannot quantize to {type}");
        }
    }

    /// <summary>float → IEEE half, round to nearest even (what F16C's conversion and ggml's software path do).</summary>
    internal static void WriteHalf(Span<byte> dst, int offset, float v) =>
        BitConverter.TryWriteBytes(dst[offset..], BitConverter.HalfToUInt16Bits((Half)v));

    internal static float HalfRoundTrip(float v) => (float)(Half)v;

    /// <summary>float → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN, as ggml and gguf-py do.</summary>
    internal static ushort ToBf16(float v)
    {
        var u = BitConverter.SingleToUInt32Bits(v);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    /// <summary>ggml's nearest_int: round half to even through the float's mantissa (valid for |x| ≤ 2^22).</summary>
    internal static int NearestInt(float f)
    {
        var v = f + 12582912f;
        return (BitConverter.SingleToInt32Bits(v) & 0x007fffff) - 0x00400000;
    }
}
