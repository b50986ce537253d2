namespace SlothSharp.Gguf;

/// <summary>ggml tensor element types (the numbers are ggml's <c>enum ggml_type</c>, stored in GGUF tensor infos).
/// Only the types SlothSharp writes are listed; the reader accepts any number and reports unknown ones by value.</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
}

/// <summary>Block geometry of each ggml type: how many elements one block holds and how many bytes it takes. A row
/// of a quantized tensor is a whole number of blocks, so its length must be a multiple of <see cref="BlockSize"/>.</summary>
public static class GgmlTypeInfo
{
    /// <summary>Elements per block (1 for the float types).</summary>
    public static int BlockSize(GgmlType t) => t switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 => 1,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 => 32,
        GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K => 256,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "ggml type not supported by SlothSharp"),
    };

    /// <summary>Bytes per block.</summary>
    public static int BlockBytes(GgmlType t) => t switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 or GgmlType.BF16 => 2,
        GgmlType.Q4_0 => 18,   // f16 scale + 16 bytes of nibbles
        GgmlType.Q4_1 => 20,   // f16 scale, f16 min + 16 bytes
        GgmlType.Q5_0 => 22,   // f16 scale, 4 bytes of fifth bits, 16 bytes of nibbles
        GgmlType.Q5_1 => 24,
        GgmlType.Q8_0 => 34,   // f16 scale + 32 signed bytes
        GgmlType.Q4_K => 144,  // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
        GgmlType.Q5_K => 176,  // as Q4_K plus 32 bytes of fifth bits
        GgmlType.Q6_K => 210,  // 128 bytes low nibbles, 64 bytes high 2 bits, 16 int8 scales, f16 d
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "ggml type not supported by SlothSharp"),
    };

    /// <summary>True when <paramref name="t"/> is one of the types this library knows.</summary>
    public static bool IsKnown(GgmlType t) => Enum.IsDefined(t);

    /// <summary>Bytes of one row of <paramref name="rowLength"/> elements.</summary>
    public static long RowBytes(GgmlType t, long rowLength)
    {
        var block = BlockSize(t);
        if (rowLength % block != 0)
            throw new ArgumentException($"row length {rowLength} is not a multiple of {t}'s block size {block}");
        return rowLength / block * BlockBytes(t);
    }

    /// <summary>Bytes of a tensor with ggml dimensions <paramref name="dims"/> (dims[0] is the row length).</summary>
    public static long TensorBytes(GgmlType t, IReadOnlyList<long> dims)
    {
        if (dims.Count == 0) return BlockBytes(t);
        long rows = 1;
        for (var i = 1; i < dims.Count; i++) rows = checked(rows * dims[i]);
        return checked(RowBytes(t, dims[0]) * rows);
    }
}
