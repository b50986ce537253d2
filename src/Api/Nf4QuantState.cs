using System.Globalization;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>
/// The non-tensor part of an NF4 quantization state, exactly what bitsandbytes writes as a weight's
/// <c>quant_state.bitsandbytes__nf4</c> JSON (see <see cref="BitsAndBytesNf4Format"/>): the dequantized shape, the
/// blocksize of the 4-bit codes, the blocksize of the double-quantized absmax, the weight's original dtype and the
/// nested offset (the mean absmax subtracted before the absmax values were quantized). Immutable, checked on creation.
/// </summary>
public sealed record Nf4QuantState
{
    public const int DefaultBlocksize = 64;
    public const int DefaultNestedBlocksize = 256;
    /// <summary>The blocksize range the kernels accept: powers of two in [<see cref="MinBlocksize"/>,
    /// <see cref="MaxBlocksize"/>]: the header's SLOTH_NF4_BLOCKSIZE_MIN/MAX, carried over by the binding generator.</summary>
    public const int MinBlocksize = SlothSharp.Interop.SlothConstants.Nf4BlocksizeMin;
    /// <inheritdoc cref="MinBlocksize"/>
    public const int MaxBlocksize = SlothSharp.Interop.SlothConstants.Nf4BlocksizeMax;

    public Nf4QuantState(long[] shape, int blocksize = DefaultBlocksize, int nestedBlocksize = DefaultNestedBlocksize,
                         ScalarType dtype = ScalarType.BFloat16, float nestedOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(shape);
        CheckBlocksize(blocksize, nameof(blocksize));
        CheckBlocksize(nestedBlocksize, nameof(nestedBlocksize));
        if (shape.Length == 0 || shape.Any(d => d < 1))
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] must have positive dimensions", nameof(shape));
        try
        {
            NumElements = checked(shape.Aggregate(1L, (a, b) => a * b));
        }
        catch (OverflowException)
        {
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] has more than 2^63 elements", nameof(shape));
        }
        if (!TensorInterop.IsFloating16Or32(dtype))
            throw new ArgumentException($"dtype must be float32, float16 or bfloat16; got {dtype}", nameof(dtype));
        if (!float.IsFinite(nestedOffset))
            throw new ArgumentException($"nested offset {nestedOffset} is not finite", nameof(nestedOffset));
        Shape = shape.ToArray();
        Blocksize = blocksize;
        NestedBlocksize = nestedBlocksize;
        Dtype = dtype;
        NestedOffset = nestedOffset;
    }

    /// <summary>The shape of the dequantized weight, e.g. [out_features, in_features].</summary>
    public long[] Shape { get; }
    public int Blocksize { get; }
    public int NestedBlocksize { get; }
    /// <summary>The dtype the weight had before quantization (bitsandbytes' <c>dtype</c>).</summary>
    public ScalarType Dtype { get; }
    /// <summary>bitsandbytes' <c>nested_offset</c>: added back to every decoded absmax.</summary>
    public float NestedOffset { get; }

    public long NumElements { get; }
    /// <summary>Blocks of <see cref="Blocksize"/> elements: the length of the absmax codes.</summary>
    public long Blocks => (NumElements + Blocksize - 1) / Blocksize;
    /// <summary>Blocks of <see cref="NestedBlocksize"/> absmax codes: the length of the nested absmax.</summary>
    public long NestedBlocks => (Blocks + NestedBlocksize - 1) / NestedBlocksize;

    /// <summary>The same state with another nested offset.</summary>
    public Nf4QuantState WithNestedOffset(float offset) => new(Shape, Blocksize, NestedBlocksize, Dtype, offset);

    public static void CheckBlocksize(int value, string name)
    {
        if (value < MinBlocksize || value > MaxBlocksize || (value & (value - 1)) != 0)
            throw new ArgumentOutOfRangeException(name, value, $"must be a power of two in [{MinBlocksize}, {MaxBlocksize}]");
    }

    public bool Equals(Nf4QuantState? other) =>
        other is not null && Shape.SequenceEqual(other.Shape) && Blocksize == other.Blocksize &&
        NestedBlocksize == other.NestedBlocksize && Dtype == other.Dtype &&
        BitConverter.SingleToInt32Bits(NestedOffset) == BitConverter.SingleToInt32Bits(other.NestedOffset);

    public override int GetHashCode() =>
        HashCode.Combine(NumElements, Shape.Length, Blocksize, NestedBlocksize, Dtype, NestedOffset);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"[{string.Join(", ", Shape)}], blocksize {Blocksize}, nested {NestedBlocksize}, {Dtype}, offset {NestedOffset}");
}

/// <summary>
/// The tensors of an NF4 weight, one row each, in the order <see cref="Nf4Weight"/> holds them: the name bitsandbytes
/// gives the tensor after the weight's key (<c>""</c> for the packed codes themselves; null for the nested offset, which
/// checkpoints carry inside the quant_state JSON), its dtype, and its shape as stored in checkpoints for a given state.
/// Validation, device moves, disposal and checkpoint keys all iterate this list: it is the one place the parts are named.
/// </summary>
public sealed record Nf4TensorSpec(string Name, string? KeySuffix, ScalarType Dtype, Func<Nf4QuantState, long[]> StoredShape)
{
    public const int CodeTableLength = 16;
    public const int NestedCodeMapLength = 256;

    public static Nf4TensorSpec Packed { get; } = new("packed", "", ScalarType.Byte, s => [(s.NumElements + 1) / 2, 1]);
    public static Nf4TensorSpec Absmax { get; } = new("absmax", ".absmax", ScalarType.Byte, s => [s.Blocks]);
    public static Nf4TensorSpec CodeTable { get; } = new("quant_map", ".quant_map", ScalarType.Float32, _ => [CodeTableLength]);
    public static Nf4TensorSpec NestedAbsmax { get; } = new("nested_absmax", ".nested_absmax", ScalarType.Float32, s => [s.NestedBlocks]);
    public static Nf4TensorSpec NestedCodeMap { get; } = new("nested_quant_map", ".nested_quant_map", ScalarType.Float32, _ => [NestedCodeMapLength]);
    public static Nf4TensorSpec NestedOffset { get; } = new("nested_offset", null, ScalarType.Float32, _ => [1]);

    /// <summary>All six, in <see cref="Nf4Weight"/>'s order (the index of a spec here is its slot there).</summary>
    public static IReadOnlyList<Nf4TensorSpec> All { get; } = [Packed, Absmax, CodeTable, NestedAbsmax, NestedCodeMap, NestedOffset];

    public long Numel(Nf4QuantState s) => StoredShape(s).Aggregate(1L, (a, b) => a * b);
}
