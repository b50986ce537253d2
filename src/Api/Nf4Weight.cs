using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>
/// A weight quantized to NF4 in the bitsandbytes layout with double-quantized absmax (QLoRA's format): the six tensors
/// of <see cref="Nf4TensorSpec.All"/> plus an <see cref="Nf4QuantState"/> (shape, blocksizes, original dtype, nested
/// offset). Tensors, all contiguous, flat, on one device (CPU or CUDA), n = product of <see cref="Shape"/>:
/// <list type="bullet">
/// <item><see cref="Packed"/>: uint8 [ceil(n/2)], element 2k in the high nibble of byte k.</item>
/// <item><see cref="AbsmaxCodes"/>: uint8 [ceil(n/Blocksize)], each block's absmax as an 8-bit code.</item>
/// <item><see cref="NestedAbsmax"/>: float32 [ceil(blocks/NestedBlocksize)]; <see cref="NestedOffset"/>: float32 [1].</item>
/// <item><see cref="NestedCodeMap"/>: float32 [256]; <see cref="CodeTable"/>: float32 [16] (the NF4 codes).</item>
/// </list>
/// Dispose to free them. Reading and writing bitsandbytes checkpoints: <see cref="BitsAndBytesNf4Format"/>.
/// </summary>
public sealed class Nf4Weight : IDisposable
{
    public const int DefaultBlocksize = Nf4QuantState.DefaultBlocksize;
    public const int DefaultNestedBlocksize = Nf4QuantState.DefaultNestedBlocksize;

    // Slots in Nf4TensorSpec.All's order.
    private static readonly int PackedSlot = Slot(Nf4TensorSpec.Packed), AbsmaxSlot = Slot(Nf4TensorSpec.Absmax),
        CodeTableSlot = Slot(Nf4TensorSpec.CodeTable), NestedAbsmaxSlot = Slot(Nf4TensorSpec.NestedAbsmax),
        NestedCodeMapSlot = Slot(Nf4TensorSpec.NestedCodeMap), NestedOffsetSlot = Slot(Nf4TensorSpec.NestedOffset);

    private static int Slot(Nf4TensorSpec spec) => ((IList<Nf4TensorSpec>)Nf4TensorSpec.All).IndexOf(spec);

    private readonly Tensor[] _tensors;
    private bool _disposed;

    /// <summary>Takes ownership of <paramref name="tensors"/> (in <see cref="Nf4TensorSpec.All"/>'s order, any shape
    /// with the right element count; flattened here) after checking them against <paramref name="state"/>.</summary>
    private Nf4Weight(Tensor[] tensors, Nf4QuantState state)
    {
        State = state;
        _tensors = tensors;
        Validate();
    }

    /// <summary>The quantization state: shape, blocksizes, original dtype, nested offset.</summary>
    public Nf4QuantState State { get; private set; }

    /// <summary>The six tensors with their specs, in <see cref="Nf4TensorSpec.All"/>'s order.</summary>
    public IReadOnlyList<(Nf4TensorSpec Spec, Tensor Tensor)> Tensors
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return Nf4TensorSpec.All.Select((s, i) => (s, _tensors[i])).ToList();
        }
    }

    public Tensor Packed => Get(PackedSlot);
    public Tensor AbsmaxCodes => Get(AbsmaxSlot);
    public Tensor NestedAbsmax => Get(NestedAbsmaxSlot);
    public Tensor NestedOffset => Get(NestedOffsetSlot);
    public Tensor NestedCodeMap => Get(NestedCodeMapSlot);
    public Tensor CodeTable => Get(CodeTableSlot);
    /// <summary>The shape of the dequantized weight, e.g. [out_features, in_features].</summary>
    public long[] Shape => State.Shape.ToArray();
    public int Blocksize => State.Blocksize;
    public int NestedBlocksize => State.NestedBlocksize;
    /// <summary>The dtype the weight had before quantization (the default output of <see cref="Dequantize"/>).</summary>
    public ScalarType OriginalDtype => State.Dtype;
    public long NumElements => State.NumElements;
    public Device Device => Packed.device;
    public bool IsDisposed => _disposed;

    private Tensor Get(int slot)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _tensors[slot];
    }

    /// <summary>Builds a weight from existing tensors (checked for dtype, size and device agreement). The tensors are
    /// flattened (a view where possible) and owned by the result.</summary>
    public static Nf4Weight FromTensors(Tensor packed, Tensor absmaxCodes, Tensor nestedAbsmax, float nestedOffset,
                                        Tensor nestedCodeMap, Tensor codeTable, long[] shape,
                                        int blocksize = DefaultBlocksize, int nestedBlocksize = DefaultNestedBlocksize,
                                        ScalarType originalDtype = ScalarType.BFloat16) =>
        FromState(new Nf4QuantState(shape, blocksize, nestedBlocksize, originalDtype, nestedOffset),
            packed, absmaxCodes, codeTable, nestedAbsmax, nestedCodeMap);

    /// <summary>Builds a weight from a quantization state and its five stored tensors (the nested offset tensor is
    /// made from <see cref="Nf4QuantState.NestedOffset"/> on the packed tensor's device).</summary>
    public static Nf4Weight FromState(Nf4QuantState state, Tensor packed, Tensor absmaxCodes, Tensor codeTable,
                                      Tensor nestedAbsmax, Tensor nestedCodeMap)
    {
        ArgumentNullException.ThrowIfNull(state);
        var byName = new Dictionary<Nf4TensorSpec, Tensor>
        {
            [Nf4TensorSpec.Packed] = packed, [Nf4TensorSpec.Absmax] = absmaxCodes, [Nf4TensorSpec.CodeTable] = codeTable,
            [Nf4TensorSpec.NestedAbsmax] = nestedAbsmax, [Nf4TensorSpec.NestedCodeMap] = nestedCodeMap,
        };
        foreach (var (spec, t) in byName) ArgumentNullException.ThrowIfNull(t, spec.Name);
        var offset = tensor(new[] { state.NestedOffset }, ScalarType.Float32, packed.device);
        var tensors = Nf4TensorSpec.All.Select(s => s == Nf4TensorSpec.NestedOffset ? offset : byName[s].flatten()).ToArray();
        try
        {
            return new Nf4Weight(tensors, state);
        }
        catch
        {
            offset.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Quantizes a float32/float16/bfloat16 weight like bitsandbytes' <c>quantize_4bit(w, blocksize,
    /// compress_statistics=True, quant_type="nf4")</c>, on the input's device (CPU or CUDA; both give the same bits).
    /// </summary>
    public static Nf4Weight Quantize(Tensor weight, int blocksize = DefaultBlocksize,
                                     int nestedBlocksize = DefaultNestedBlocksize)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var srcDtype = TensorInterop.ToSloth(weight.dtype, nameof(weight));
        var n = weight.numel();
        if (n < 1) throw new ArgumentException("weight is empty", nameof(weight));
        Nf4QuantState.CheckBlocksize(blocksize, nameof(blocksize));
        Nf4QuantState.CheckBlocksize(nestedBlocksize, nameof(nestedBlocksize));
        var state = new Nf4QuantState(weight.shape, blocksize, nestedBlocksize, weight.dtype);
        var device = weight.device;
        using var scope = NewDisposeScope();
        var work = weight.device_type == TorchSharp.DeviceType.CUDA ? device : CPU;  // quantize where the weight is
        var src = weight.detach().to(work).contiguous();
        // The GPU kernel cannot report a non-finite value without a sync; the CPU one fails with the index itself.
        if (work.type == TorchSharp.DeviceType.CUDA && !src.isfinite().all().item<bool>())
            throw new ArgumentException("weight has non-finite values; NF4 cannot represent them", nameof(weight));
        var packed = zeros(Nf4TensorSpec.Packed.Numel(state), ScalarType.Byte, work);
        var codes = zeros(state.Blocks, ScalarType.Byte, work);
        var nestedAbsmax = zeros(state.NestedBlocks, ScalarType.Float32, work);
        var offset = zeros(1, ScalarType.Float32, work);
        var scratch = empty(state.Blocks, ScalarType.Float32, work);
        var map = tensor(Nf4Tables.DynamicMap.ToArray(), ScalarType.Float32, work);
        Native.Nf4Quantize(TensorInterop.DataPtr(src), srcDtype, n, blocksize, nestedBlocksize,
            TensorInterop.DataPtr(map), TensorInterop.DataPtr(packed), TensorInterop.DataPtr(codes),
            TensorInterop.DataPtr(nestedAbsmax), TensorInterop.DataPtr(offset), TensorInterop.DataPtr(scratch),
            TensorInterop.DeviceSelector(src), 0);
        var table = tensor(Nf4Tables.Nf4Codes.ToArray(), ScalarType.Float32);
        var result = FromState(state.WithNestedOffset(offset.item<float>()), packed.to(device), codes.to(device),
            table.to(device), nestedAbsmax.to(device), map.to(device));
        result.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>Dequantizes into a new tensor of <see cref="Shape"/> on the weight's device (bit-identical to
    /// bitsandbytes' <c>dequantize_4bit</c>). <paramref name="dtype"/>: float32, float16 or bfloat16 (default: the
    /// original dtype). On CUDA the kernel is queued on the default stream and not synchronized.</summary>
    public Tensor Dequantize(ScalarType? dtype = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var output = empty(State.Shape, dtype ?? OriginalDtype, Device);
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

    /// <summary>A copy of this weight on another device (this one is left as it is).</summary>
    public Nf4Weight To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        var result = new Nf4Weight(_tensors.Select(t => t.to(device)).ToArray(), State);
        result.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>Reads one 4-bit weight from a bitsandbytes / transformers checkpoint file (see
    /// <see cref="BitsAndBytesNf4Format.Read"/>). Tensors land on the CPU.</summary>
    public static Nf4Weight FromSafetensors(string path, string prefix = "weight")
    {
        using var reader = new SafetensorsReader(path);
        return BitsAndBytesNf4Format.Read(reader, prefix);
    }

    /// <inheritdoc cref="BitsAndBytesNf4Format.Read"/>
    public static Nf4Weight FromSafetensors(ITensorSource source, string prefix) => BitsAndBytesNf4Format.Read(source, prefix);

    /// <summary>The tensors of this weight under bitsandbytes' key names (for <see cref="SafetensorsWriter"/>); see
    /// <see cref="BitsAndBytesNf4Format.Entries"/>. The entries are views of this weight's tensors plus a new JSON tensor.</summary>
    public IReadOnlyList<KeyValuePair<string, Tensor>> ToSafetensorsEntries(string prefix = "weight") =>
        BitsAndBytesNf4Format.Entries(this, prefix);

    /// <summary>Takes a new state of the same layout (shape and blocksizes) after the tensors were overwritten in place,
    /// e.g. by a parent module's <c>load_state_dict</c> copying into a <see cref="Linear4bit"/>'s buffers.</summary>
    internal void AdoptState(Nf4QuantState state)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!state.Shape.SequenceEqual(State.Shape) || state.Blocksize != State.Blocksize || state.NestedBlocksize != State.NestedBlocksize)
            throw new InvalidOperationException($"the new quant state ({state}) has another layout than the weight's ({State})");
        using (no_grad()) _tensors[NestedOffsetSlot].fill_(state.NestedOffset);
        State = state;
    }

    /// <summary>Moves every tensor of this weight to the enclosing dispose scope's parent.</summary>
    public void MoveToOuterDisposeScope()
    {
        foreach (var t in _tensors) t.MoveToOuterDisposeScope();
    }

    /// <summary>Detaches every tensor from any dispose scope: the weight then lives until <see cref="Dispose"/>.</summary>
    public void DetachFromDisposeScope()
    {
        foreach (var t in _tensors) t.DetachFromDisposeScope();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _tensors) t.Dispose();
    }

    public override string ToString() =>
        _disposed ? "Nf4Weight(disposed)" : $"Nf4Weight({State}, {Device})";

    private void Validate()
    {
        for (var i = 0; i < Nf4TensorSpec.All.Count; i++)
        {
            var (spec, t) = (Nf4TensorSpec.All[i], _tensors[i]);
            if (t is null || t.IsInvalid) throw new ArgumentException($"{spec.Name} is null or disposed", spec.Name);
            TensorInterop.RequireDtype(t, spec.Dtype, spec.Name);
            TensorInterop.RequireNumel(t, spec.Numel(State), spec.Name);
            TensorInterop.RequireContiguous(t, spec.Name);
            TensorInterop.RequireSameDevice(_tensors[PackedSlot], "packed", t, spec.Name);
        }
    }
}
