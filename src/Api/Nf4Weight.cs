using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>
/// A weight quantized to NF4 in the bitsandbytes layout with double-quantized absmax (QLoRA's format). Tensors:
/// <list type="bullet">
/// <item><see cref="Packed"/>: uint8 [ceil(n/2)], element 2k in the high nibble of byte k.</item>
/// <item><see cref="AbsmaxCodes"/>: uint8 [ceil(n/Blocksize)], each block's absmax as an 8-bit code.</item>
/// <item><see cref="NestedAbsmax"/>: float32 [ceil(blocks/NestedBlocksize)]; <see cref="NestedOffset"/>: float32 [1].</item>
/// <item><see cref="NestedCodeMap"/>: float32 [256]; <see cref="CodeTable"/>: float32 [16] (the NF4 codes).</item>
/// </list>
/// All live on one device (CPU or CUDA). n = product of <see cref="Shape"/>. Dispose to free them.
/// </summary>
public sealed class Nf4Weight : IDisposable
{
    public const int DefaultBlocksize = 64;
    public const int DefaultNestedBlocksize = 256;

    private Nf4Weight(Tensor packed, Tensor absmaxCodes, Tensor nestedAbsmax, Tensor nestedOffset, Tensor nestedCodeMap,
                      Tensor codeTable, long[] shape, int blocksize, int nestedBlocksize, ScalarType dtype)
    {
        Packed = packed;
        AbsmaxCodes = absmaxCodes;
        NestedAbsmax = nestedAbsmax;
        NestedOffset = nestedOffset;
        NestedCodeMap = nestedCodeMap;
        CodeTable = codeTable;
        Shape = shape;
        Blocksize = blocksize;
        NestedBlocksize = nestedBlocksize;
        OriginalDtype = dtype;
        Validate();
    }

    public Tensor Packed { get; }
    public Tensor AbsmaxCodes { get; }
    public Tensor NestedAbsmax { get; }
    public Tensor NestedOffset { get; }
    public Tensor NestedCodeMap { get; }
    public Tensor CodeTable { get; }
    /// <summary>The shape of the dequantized weight, e.g. [out_features, in_features].</summary>
    public long[] Shape { get; }
    public int Blocksize { get; }
    public int NestedBlocksize { get; }
    /// <summary>The dtype the weight had before quantization (the default output of <see cref="Dequantize"/>).</summary>
    public ScalarType OriginalDtype { get; }
    public long NumElements => Shape.Aggregate(1L, (a, b) => a * b);
    public Device Device => Packed.device;

    /// <summary>Builds a weight from existing tensors (checked for dtype, size and device agreement).</summary>
    public static Nf4Weight FromTensors(Tensor packed, Tensor absmaxCodes, Tensor nestedAbsmax, float nestedOffset,
                                        Tensor nestedCodeMap, Tensor codeTable, long[] shape,
                                        int blocksize = DefaultBlocksize, int nestedBlocksize = DefaultNestedBlocksize,
                                        ScalarType originalDtype = ScalarType.BFloat16) =>
        new(packed.flatten(), absmaxCodes.flatten(), nestedAbsmax.flatten(),
            tensor(new[] { nestedOffset }, ScalarType.Float32, packed.device), nestedCodeMap.flatten(),
            codeTable.flatten(), shape.ToArray(), blocksize, nestedBlocksize, originalDtype);

    /// <summary>
    /// Quantizes a float32/float16/bfloat16 weight like bitsandbytes' <c>quantize_4bit(w, blocksize,
    /// compress_statistics=True, quant_type="nf4")</c>, on the input's device (CPU or CUDA; both give the same bits).
    /// </summary>
    public static unsafe Nf4Weight Quantize(Tensor weight, int blocksize = DefaultBlocksize,
                                            int nestedBlocksize = DefaultNestedBlocksize)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var srcDtype = TensorInterop.ToSloth(weight.dtype, nameof(weight));
        var n = weight.numel();
        if (n < 1) throw new ArgumentException("weight is empty", nameof(weight));
        CheckBlocksize(blocksize, nameof(blocksize));
        CheckBlocksize(nestedBlocksize, nameof(nestedBlocksize));
        var device = weight.device;
        var blocks = (n + blocksize - 1) / blocksize;
        var nested = (blocks + nestedBlocksize - 1) / nestedBlocksize;
        using var scope = NewDisposeScope();
        var work = weight.device_type == TorchSharp.DeviceType.CUDA ? device : CPU;  // quantize where the weight is
        var src = weight.detach().to(work).contiguous();
        // The GPU kernel cannot report a non-finite value without a sync; the CPU one fails with the index itself.
        if (work.type == TorchSharp.DeviceType.CUDA && !src.isfinite().all().item<bool>())
            throw new ArgumentException("weight has non-finite values; NF4 cannot represent them", nameof(weight));
        var packed = zeros(new[] { (n + 1) / 2 }, ScalarType.Byte, work);
        var codes = zeros(new[] { blocks }, ScalarType.Byte, work);
        var nestedAbsmax = zeros(new[] { nested }, ScalarType.Float32, work);
        var offset = zeros(new[] { 1L }, ScalarType.Float32, work);
        var scratch = empty(new[] { blocks }, ScalarType.Float32, work);
        var map = tensor(Nf4Tables.DynamicMap.ToArray(), ScalarType.Float32, work);
        Native.Nf4Quantize(TensorInterop.DataPtr(src), srcDtype, n, blocksize, nestedBlocksize,
            TensorInterop.DataPtr(map), TensorInterop.DataPtr(packed), TensorInterop.DataPtr(codes),
            TensorInterop.DataPtr(nestedAbsmax), TensorInterop.DataPtr(offset), TensorInterop.DataPtr(scratch),
            TensorInterop.DeviceSelector(src), 0);
        var table = tensor(Nf4Tables.Nf4Codes.ToArray(), ScalarType.Float32);
        var result = new Nf4Weight(packed.to(device), codes.to(device), nestedAbsmax.to(device), offset.to(device),
            map.to(device), table.to(device), weight.shape.ToArray(), blocksize, nestedBlocksize, weight.dtype);
        result.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>Dequantizes into a new tensor of <see cref="Shape"/> on the weight's device (bit-identical to
    /// bitsandbytes' <c>dequantize_4bit</c>). <paramref name="dtype"/>: float32, float16 or bfloat16 (default: the
    /// original dtype). On CUDA the kernel is queued on the default stream and not synchronized.</summary>
    public Tensor Dequantize(ScalarType? dtype = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var output = empty(Shape, dtype ?? OriginalDtype, Device);
        try
        {
            DequantizeInto(output);
            return output;
        }
        catch
        {
            output.Dispose();
            throw;
        }
    }

    /// <summary>Dequantizes into <paramref name="output"/>: contiguous, <see cref="NumElements"/> elements of
    /// float32/float16/bfloat16, on the weight's device (a contiguous slice of a larger buffer works).</summary>
    public void DequantizeInto(Tensor output)
    {
        ArgumentNullException.ThrowIfNull(output);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var outDtype = TensorInterop.ToSloth(output.dtype, nameof(output));
        TensorInterop.RequireContiguous(output, nameof(output));
        TensorInterop.RequireNumel(output, NumElements, nameof(output));
        TensorInterop.RequireSameDevice(Packed, "the NF4 weight", output, nameof(output));
        Native.Nf4Dequantize(TensorInterop.DataPtr(Packed), TensorInterop.DataPtr(AbsmaxCodes),
            TensorInterop.DataPtr(NestedCodeMap), TensorInterop.DataPtr(NestedAbsmax), TensorInterop.DataPtr(NestedOffset),
            TensorInterop.DataPtr(CodeTable), NumElements, Blocksize, NestedBlocksize, outDtype,
            TensorInterop.DataPtr(output), TensorInterop.DeviceSelector(output), 0);
    }

    /// <summary>A copy of this weight on another device.</summary>
    public Nf4Weight To(Device device) =>
        _disposed ? throw new ObjectDisposedException(nameof(Nf4Weight)) : new(Packed.to(device), AbsmaxCodes.to(device), NestedAbsmax.to(device), NestedOffset.to(device),
            NestedCodeMap.to(device), CodeTable.to(device), Shape.ToArray(), Blocksize, NestedBlocksize, OriginalDtype);

    /// <summary>
    /// Reads one 4-bit weight from a bitsandbytes / transformers checkpoint: keys <c>{prefix}</c> (packed uint8),
    /// <c>{prefix}.absmax</c>, <c>{prefix}.quant_map</c>, <c>{prefix}.nested_absmax</c>,
    /// <c>{prefix}.nested_quant_map</c> and <c>{prefix}.quant_state.bitsandbytes__nf4</c> (UTF-8 JSON with
    /// quant_type, blocksize, dtype, shape, nested_blocksize, nested_offset). Tensors land on the CPU.
    /// </summary>
    public static Nf4Weight FromSafetensors(string path, string prefix = "weight")
    {
        using var reader = new SafetensorsReader(path);
        return FromSafetensors(reader, prefix);
    }

    public static Nf4Weight FromSafetensors(SafetensorsReader reader, string prefix)
    {
        var stateKey = $"{prefix}.quant_state.bitsandbytes__nf4";
        if (!reader.Entries.ContainsKey(stateKey))
        {
            var fp4 = reader.Entries.ContainsKey($"{prefix}.quant_state.bitsandbytes__fp4");
            throw new InvalidDataException(fp4
                ? $"{reader.Path}: '{prefix}' is FP4-quantized; SlothSharp reads NF4 only"
                : $"{reader.Path}: no '{stateKey}': '{prefix}' is not a bitsandbytes 4-bit weight with double quantization");
        }
        var state = JsonNode.Parse(reader.ReadUtf8(stateKey))!.AsObject();
        var quantType = state["quant_type"]?.GetValue<string>();
        if (quantType != "nf4") throw new InvalidDataException($"{reader.Path}: quant_type '{quantType}' is not nf4");
        if (state["nested_offset"] is null || state["nested_blocksize"] is null)
            throw new InvalidDataException($"{reader.Path}: '{prefix}' has no nested (double) quantization state");
        var shape = state["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
        var dtype = state["dtype"]!.GetValue<string>() switch
        {
            "bfloat16" => ScalarType.BFloat16,
            "float16" => ScalarType.Float16,
            "float32" => ScalarType.Float32,
            var other => throw new InvalidDataException($"{reader.Path}: unsupported original dtype '{other}'"),
        };
        // Python wrote the float32 offset as a double; converting back is exact.
        var offset = (float)state["nested_offset"]!.GetValue<double>();
        var nestedDtype = state["nested_dtype"]?.GetValue<string>() ?? "float32";
        if (nestedDtype != "float32") throw new InvalidDataException($"{reader.Path}: nested_dtype '{nestedDtype}' is not float32");
        using var scope = NewDisposeScope();
        var result = new Nf4Weight(reader.Read(prefix).flatten(), reader.Read($"{prefix}.absmax").flatten(),
            reader.Read($"{prefix}.nested_absmax").flatten(), tensor(new[] { offset }, ScalarType.Float32),
            reader.Read($"{prefix}.nested_quant_map").flatten(), reader.Read($"{prefix}.quant_map").flatten(),
            shape, state["blocksize"]!.GetValue<int>(), state["nested_blocksize"]!.GetValue<int>(), dtype);
        result.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>The tensors of this weight under bitsandbytes' key names (for <see cref="SafetensorsWriter"/>).</summary>
    public IReadOnlyList<KeyValuePair<string, Tensor>> ToSafetensorsEntries(string prefix = "weight")
    {
        var offset = NestedOffset.cpu().item<float>();
        var dtypeName = OriginalDtype switch
        {
            ScalarType.BFloat16 => "bfloat16",
            ScalarType.Float16 => "float16",
            _ => "float32",
        };
        var json = new JsonObject
        {
            ["quant_type"] = "nf4",
            ["blocksize"] = Blocksize,
            ["dtype"] = dtypeName,
            ["shape"] = new JsonArray(Shape.Select(d => (JsonNode)d).ToArray()),
            ["nested_blocksize"] = NestedBlocksize,
            ["nested_dtype"] = "float32",
            ["nested_offset"] = JsonValue.Create((double)offset),
        }.ToJsonString();
        var stateBytes = Encoding.UTF8.GetBytes(json);
        return
        [
            new($"{prefix}", Packed.reshape(Packed.numel(), 1)),
            new($"{prefix}.absmax", AbsmaxCodes),
            new($"{prefix}.quant_map", CodeTable),
            new($"{prefix}.nested_absmax", NestedAbsmax),
            new($"{prefix}.nested_quant_map", NestedCodeMap),
            new($"{prefix}.quant_state.bitsandbytes__nf4", tensor(stateBytes, ScalarType.Byte)),
        ];
    }

    /// <summary>Moves every tensor of this weight to the enclosing dispose scope's parent.</summary>
    public void MoveToOuterDisposeScope()
    {
        foreach (var t in All) t.MoveToOuterDisposeScope();
    }

    /// <summary>Detaches every tensor from any dispose scope: the weight then lives until <see cref="Dispose"/>.</summary>
    public void DetachFromDisposeScope()
    {
        foreach (var t in All) t.DetachFromDisposeScope();
    }

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in All) t.Dispose();
    }

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture,
            $"Nf4Weight([{string.Join(", ", Shape)}], blocksize {Blocksize}, nested {NestedBlocksize}, {OriginalDtype}, {Device})");

    private IEnumerable<Tensor> All => [Packed, AbsmaxCodes, NestedAbsmax, NestedOffset, NestedCodeMap, CodeTable];

    private static void CheckBlocksize(int value, string name)
    {
        if (value < SlothConstants.Nf4BlocksizeMin || value > SlothConstants.Nf4BlocksizeMax || (value & (value - 1)) != 0)
            throw new ArgumentOutOfRangeException(name, value,
                $"must be a power of two in [{SlothConstants.Nf4BlocksizeMin}, {SlothConstants.Nf4BlocksizeMax}]");
    }

    private void Validate()
    {
        CheckBlocksize(Blocksize, "blocksize");
        CheckBlocksize(NestedBlocksize, "nestedBlocksize");
        if (Shape.Length == 0 || Shape.Any(d => d < 1))
            throw new ArgumentException($"shape [{string.Join(", ", Shape)}] must have positive dimensions");
        var n = NumElements;
        var blocks = (n + Blocksize - 1) / Blocksize;
        TensorInterop.RequireDtype(Packed, ScalarType.Byte, "packed");
        TensorInterop.RequireDtype(AbsmaxCodes, ScalarType.Byte, "absmax");
        TensorInterop.RequireDtype(NestedAbsmax, ScalarType.Float32, "nested_absmax");
        TensorInterop.RequireDtype(NestedOffset, ScalarType.Float32, "nested_offset");
        TensorInterop.RequireDtype(NestedCodeMap, ScalarType.Float32, "nested_quant_map");
        TensorInterop.RequireDtype(CodeTable, ScalarType.Float32, "quant_map");
        TensorInterop.RequireNumel(Packed, (n + 1) / 2, "packed");
        TensorInterop.RequireNumel(AbsmaxCodes, blocks, "absmax");
        TensorInterop.RequireNumel(NestedAbsmax, (blocks + NestedBlocksize - 1) / NestedBlocksize, "nested_absmax");
        TensorInterop.RequireNumel(NestedOffset, 1, "nested_offset");
        TensorInterop.RequireNumel(NestedCodeMap, 256, "nested_quant_map");
        TensorInterop.RequireNumel(CodeTable, 16, "quant_map");
        foreach (var (t, name) in new[] { (Packed, "packed"), (AbsmaxCodes, "absmax"), (NestedAbsmax, "nested_absmax"),
                     (NestedOffset, "nested_offset"), (NestedCodeMap, "nested_quant_map"), (CodeTable, "quant_map") })
        {
            TensorInterop.RequireContiguous(t, name);
            TensorInterop.RequireSameDevice(Packed, "packed", t, name);
        }
    }
}
