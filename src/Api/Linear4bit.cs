using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp;

/// <summary>
/// A frozen linear layer with an NF4 weight (bitsandbytes' Linear4bit): y = x · dequant(W)ᵀ + b.
/// x: [..., in_features] of float32/float16/bfloat16 on the layer's device; y: [..., out_features] in x's dtype.
/// With a <see cref="ComputeDtype"/> set (<c>layer.to(dtype)</c> sets it), x is cast to it for the product and y cast
/// back to x's dtype, as bitsandbytes does; without one, the product runs in x's dtype.
/// The dequantized weight is a temporary per call (the autograd graph keeps it only while it needs it for dx).
/// The weight receives no gradient; train adapters (LoRA) beside it.
///
/// <para>The quantization state is registered as buffers under bitsandbytes' names, so <c>state_dict()</c> has exactly
/// the keys, dtypes and shapes of a transformers bnb-4bit checkpoint for this layer (see <see cref="BitsAndBytesNf4Format"/>):
/// <c>weight</c> uint8 [ceil(n/2), 1], <c>weight.absmax</c> uint8 [blocks], <c>weight.quant_map</c> float32 [16],
/// <c>weight.nested_absmax</c> float32 [nested blocks], <c>weight.nested_quant_map</c> float32 [256],
/// <c>weight.quant_state.bitsandbytes__nf4</c> uint8 [json bytes], and <c>bias</c> [out] when there is one.
/// <c>.to(device)</c> moves all of them (the JSON buffer is host metadata and stays on the CPU, as bitsandbytes keeps
/// it); <c>.to(dtype)</c> sets <see cref="ComputeDtype"/> and casts the bias, never touching the NF4 state;
/// <see cref="load_state_dict"/> replaces the state with any valid NF4 state of the same [out, in].</para>
/// </summary>
public sealed class Linear4bit : Module<Tensor, Tensor>
{
    /// <summary>The state-dict key of the weight (bitsandbytes': the other keys are <c>weight.absmax</c> etc.).</summary>
    public const string WeightKey = "weight";
    public const string BiasKey = "bias";

    private Nf4Weight _weight;
    private Tensor? _bias;
    // Views of _weight's tensors in checkpoint shapes, and the JSON: what the module registers. Owned here.
    private readonly List<Tensor> _registered = [];

    /// <summary>Wraps an NF4 weight [out, in] (ownership passes to the layer) and an optional bias [out] on its device
    /// (the layer keeps a detached reference).</summary>
    public Linear4bit(Nf4Weight weight, Tensor? bias = null, string name = "Linear4bit") : base(name)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ObjectDisposedException.ThrowIf(weight.IsDisposed, weight);
        CheckWeight(weight, null, "weight");
        if (bias is not null) CheckBias(bias, weight, "bias");
        _weight = weight;
        _bias = bias?.detach();
        (_deviceType, _deviceIndex) = DeviceOf(weight.Device);
        Register();
    }

    /// <summary>Quantizes a dense weight [out, in] (and keeps a copy of an optional bias [out]).</summary>
    public static Linear4bit FromDense(Tensor weight, Tensor? bias = null, int blocksize = Nf4Weight.DefaultBlocksize) =>
        new(Nf4Weight.Quantize(weight, blocksize), bias?.detach().clone());

    /// <summary>
    /// Builds the layer stored at <paramref name="prefix"/> of a bitsandbytes 4-bit checkpoint, e.g.
    /// <c>model.layers.0.mlp.up_proj</c>: reads <c>{prefix}.weight</c> with its quant-state keys and <c>{prefix}.bias</c>
    /// when present, onto <paramref name="device"/> (default CPU). The NF4 bytes are used as stored (no re-quantization).
    /// With <paramref name="quantizeDense"/>, a dense float <c>{prefix}.weight</c> [out, in] (no quant state) is
    /// quantized on load (on the CPU, like <see cref="FromDense"/>) instead of being an error.
    /// Errors name the source and the key (<see cref="InvalidDataException"/>).
    /// </summary>
    public static Linear4bit FromCheckpoint(ITensorSource source, string prefix, Device? device = null,
                                            ScalarType? computeDtype = null, bool quantizeDense = false)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(prefix);
        var key = Join(prefix, WeightKey);
        var weight = quantizeDense && !BitsAndBytesNf4Format.IsNf4(source, key) && source.Contains(key)
            ? QuantizeStored(source, key, device)
            : BitsAndBytesNf4Format.Read(source, key, device);
        Tensor? bias = null;
        try
        {
            if (weight.Shape.Length != 2)
                throw new InvalidDataException($"{source.Path}: '{key}' has shape [{string.Join(", ", weight.Shape)}]; a linear weight is [out, in]");
            var biasKey = Join(prefix, BiasKey);
            if (source.Contains(biasKey))
            {
                bias = source.Read(biasKey, device);
                if (bias.ndim != 1 || bias.shape[0] != weight.Shape[0] || !TensorInterop.IsFloating16Or32(bias.dtype))
                    throw new InvalidDataException($"{source.Path}: '{biasKey}' is {bias.dtype} [{string.Join(", ", bias.shape)}]; expected a float [{weight.Shape[0]}]");
            }
            var layer = new Linear4bit(weight, bias, prefix) { ComputeDtype = computeDtype };
            bias?.Dispose();  // the layer holds its own (detached) handle to the same storage
            return layer;
        }
        catch
        {
            weight.Dispose();
            bias?.Dispose();
            throw;
        }
    }

    private static Nf4Weight QuantizeStored(ITensorSource source, string key, Device? device)
    {
        using var dense = source.Read(key);
        if (dense.ndim != 2 || !TensorInterop.IsFloating16Or32(dense.dtype))
            throw new InvalidDataException($"{source.Path}: '{key}' is {dense.dtype} [{string.Join(", ", dense.shape)}]; a dense linear weight is a float [out, in]");
        var cpu = Nf4Weight.Quantize(dense);
        if (device is null || device.type == DeviceType.CPU) return cpu;
        using (cpu) return cpu.To(device);
    }

    /// <summary>The NF4 weight. Replaced (and the previous one disposed) by <c>.to(device)</c> and
    /// <see cref="load_state_dict"/>: read it again after those rather than keeping it.</summary>
    public Nf4Weight Weight
    {
        get
        {
            ObjectDisposedException.ThrowIf(_weight.IsDisposed, this);
            return _weight;
        }
    }

    public Tensor? Bias => _bias;
    /// <summary>The dtype the product runs in; null: x's dtype. Set by <c>.to(dtype)</c> (float32/float16/bfloat16).</summary>
    public ScalarType? ComputeDtype
    {
        get;
        set
        {
            if (value is { } v && !TensorInterop.IsFloating16Or32(v))
                throw new ArgumentException($"compute dtype must be float32, float16 or bfloat16; got {v}", nameof(value));
            field = value;
        }
    }

    public long InFeatures => _weight.Shape[1];
    public long OutFeatures => _weight.Shape[0];
    public Device Device => _weight.Device;

    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        SyncQuantState();
        var weight = Weight;
        if (input.ndim < 1 || input.shape[^1] != InFeatures)
            throw new ArgumentException($"input's last dimension must be {InFeatures}; got [{string.Join(", ", input.shape)}]", nameof(input));
        if (!TensorInterop.IsFloating16Or32(input.dtype))
            throw new ArgumentException($"input must be float32, float16 or bfloat16; got {input.dtype}", nameof(input));
        TensorInterop.RequireSameDevice(weight.Packed, "weight", input, nameof(input));
        var compute = ComputeDtype ?? input.dtype;
        using var scope = NewDisposeScope();
        // Disposing the handles only drops these references: autograd keeps its own for dx.
        var x = input.dtype == compute ? input : input.to(compute);
        var w = weight.Dequantize(compute);
        var b = _bias is null ? null : _bias.dtype == compute ? _bias : _bias.to(compute);
        var y = functional.linear(x, w, b);
        if (y.dtype != input.dtype) y = y.to(input.dtype);
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads this layer's state from a state dict with bitsandbytes' keys (as <c>state_dict()</c> or a checkpoint
    /// gives them, without a prefix). Unlike the base method it replaces the tensors, so a state with another
    /// nested offset, blocksize or JSON length loads; the weight keeps [out, in] and the presence of a bias. Tensors land
    /// on the layer's device. With <paramref name="strict"/> false, missing NF4 keys still fail (the weight is one unit)
    /// while a missing bias keeps the current one.
    /// </summary>
    public override (IList<string> missing_keys, IList<string> unexpected_keyes) load_state_dict(
        Dictionary<string, Tensor> source, bool strict = true, IList<string>? skip = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ObjectDisposedException.ThrowIf(_weight.IsDisposed, this);
        skip ??= Array.Empty<string>();
        var filtered = source.Where(kv => !skip.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        var expected = BitsAndBytesNf4Format.Keys(WeightKey).ToList();
        if (_bias is not null) expected.Add(BiasKey);
        var missing = expected.Where(k => !filtered.ContainsKey(k) && !skip.Contains(k)).ToList();
        var unexpected = filtered.Keys.Where(k => !expected.Contains(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new InvalidOperationException(
                $"{GetName()}: the state dict does not match: missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", unexpected)}]");
        var src = new TensorDictionarySource(filtered);
        var device = Device;
        var weight = BitsAndBytesNf4Format.Read(src, WeightKey, device);
        if (!weight.Shape.SequenceEqual(_weight.Shape))
        {
            weight.Dispose();
            throw new InvalidOperationException($"{GetName()}: the state dict's weight is [{string.Join(", ", weight.Shape)}]; this layer is [{string.Join(", ", _weight.Shape)}]");
        }
        Tensor? bias = _bias;
        if (_bias is not null && filtered.TryGetValue(BiasKey, out var b))
        {
            if (!b.shape.SequenceEqual(_bias.shape))
            {
                weight.Dispose();
                throw new InvalidOperationException($"{GetName()}: bias is [{string.Join(", ", b.shape)}]; expected [{string.Join(", ", _bias.shape)}]");
            }
            bias = b.detach().to(_bias.dtype, device, copy: true).DetachFromDisposeScope();
        }
        var oldBias = _bias;
        Replace(weight, bias);
        if (!ReferenceEquals(oldBias, bias)) oldBias?.Dispose();
        return (missing, unexpected);
    }

    /// <summary>.to(device) moves every tensor; .to(dtype) only sets the compute dtype and casts the bias.</summary>
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        if (dtype is null && device is null) throw new ArgumentNullException(nameof(dtype), "dtype and device are both null");
        ObjectDisposedException.ThrowIf(_weight.IsDisposed, this);
        if (dtype is { } d)
        {
            if (!TensorInterop.IsFloating16Or32(d))
                throw new ArgumentException($"Linear4bit computes in float32, float16 or bfloat16; got {d}", nameof(dtype));
            ComputeDtype = d;
        }
        var target = device ?? _weight.Device;
        var sameDevice = DeviceOf(target) == DeviceOf(_weight.Device);
        var weight = sameDevice ? _weight : _weight.To(target);
        var bias = _bias;
        if (_bias is not null && (!sameDevice || (dtype is { } bd && _bias.dtype != bd)))
            bias = _bias.to(dtype ?? _bias.dtype, target).DetachFromDisposeScope();
        var (oldWeight, oldBias) = (_weight, _bias);
        Replace(weight, bias);
        if (!ReferenceEquals(oldWeight, weight)) oldWeight.Dispose();
        if (!ReferenceEquals(oldBias, bias)) oldBias?.Dispose();
        (_deviceType, _deviceIndex) = DeviceOf(target);
    }

    /// <summary>Installs a new weight and bias and re-registers the buffers (the old weight is the caller's to dispose).</summary>
    private void Replace(Nf4Weight weight, Tensor? bias)
    {
        foreach (var t in _registered) t.Dispose();
        _registered.Clear();
        if (!ReferenceEquals(weight, _weight)) weight.DetachFromDisposeScope();
        _weight = weight;
        _bias = bias;
        Register();
    }

    private void Register()
    {
        foreach (var (key, t) in BitsAndBytesNf4Format.Entries(_weight, WeightKey))
        {
            var owned = t.DetachFromDisposeScope();
            _registered.Add(owned);
            ConditionallyRegisterBuffer(key, owned);
            if (key.EndsWith(BitsAndBytesNf4Format.QuantStateSuffix, StringComparison.Ordinal))
                (_stateBuffer, _stateBytes) = (owned, owned.bytes.ToArray());
        }
        ConditionallyRegisterBuffer(BiasKey, _bias);
    }

    private Tensor? _stateBuffer;
    private byte[] _stateBytes = [];

    /// <summary>
    /// The NF4 tensors are registered as views, so a parent module's <c>load_state_dict</c> (which copies in place)
    /// updates them directly; the quant-state JSON buffer (host memory, ~170 bytes) is compared here with what the weight
    /// was built from, and a changed one is adopted, so the nested offset never goes stale. A JSON of another length
    /// cannot be copied in place: load such states with <see cref="load_state_dict"/> or <see cref="LoadStateDict"/>.
    /// </summary>
    private unsafe void SyncQuantState()
    {
        if (_stateBuffer is null || _stateBuffer.IsInvalid) return;
        var current = new ReadOnlySpan<byte>((void*)TensorInterop.DataPtr(_stateBuffer), (int)_stateBuffer.numel());
        if (current.SequenceEqual(_stateBytes)) return;
        var state = BitsAndBytesNf4Format.ParseQuantState(current, $"{GetName()}: buffer '{WeightKey}{BitsAndBytesNf4Format.QuantStateSuffix}'");
        _weight.AdoptState(state);
        _stateBytes = current.ToArray();
    }

    /// <summary>
    /// Loads a state dict into any module tree holding <see cref="Linear4bit"/> layers (TorchSharp's own
    /// <c>load_state_dict</c> copies tensors in place, which fails for a quant-state JSON of another length): each
    /// Linear4bit takes its keys through its <see cref="load_state_dict"/>, every other tensor is copied in place.
    /// Returns the missing and unexpected keys; with <paramref name="strict"/> either is an
    /// <see cref="InvalidOperationException"/> listing them, raised before anything is changed.
    /// </summary>
    public static (IList<string> missing, IList<string> unexpected) LoadStateDict(nn.Module root,
        IReadOnlyDictionary<string, Tensor> source, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(source);
        var layers = root.named_modules().Where(m => m.module is Linear4bit).Select(m => (prefix: m.name + ".", layer: (Linear4bit)m.module)).ToList();
        if (root is Linear4bit self) layers.Add(("", self));
        var destination = root.state_dict();
        var missing = destination.Keys.Where(k => !source.ContainsKey(k)).ToList();
        var unexpected = source.Keys.Where(k => !destination.ContainsKey(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new InvalidOperationException(
                $"the state dict does not match the module: missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", unexpected)}]");
        var handled = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (prefix, layer) in layers)
        {
            var own = layer.state_dict().Keys.Select(k => prefix + k).ToList();
            var sub = own.Where(source.ContainsKey).ToDictionary(k => k[prefix.Length..], k => source[k]);
            if (sub.Count == 0) continue;
            layer.load_state_dict(sub, strict);
            handled.UnionWith(own);
        }
        using (no_grad())
        {
            foreach (var (key, t) in destination)
                if (!handled.Contains(key) && source.TryGetValue(key, out var s)) t.copy_(s);
        }
        return (missing, unexpected);
    }

    private static void CheckWeight(Nf4Weight weight, Nf4Weight? like, string name)
    {
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"a linear weight is [out, in]; got [{string.Join(", ", weight.Shape)}]", name);
        if (like is not null && !weight.Shape.SequenceEqual(like.Shape))
            throw new ArgumentException($"weight is [{string.Join(", ", weight.Shape)}]; expected [{string.Join(", ", like.Shape)}]", name);
    }

    private static void CheckBias(Tensor bias, Nf4Weight weight, string name)
    {
        if (bias.ndim != 1 || bias.shape[0] != weight.Shape[0])
            throw new ArgumentException($"bias must be [{weight.Shape[0]}]; got [{string.Join(", ", bias.shape)}]", name);
        if (!TensorInterop.IsFloating16Or32(bias.dtype))
            throw new ArgumentException($"bias must be float32, float16 or bfloat16; got {bias.dtype}", name);
        TensorInterop.RequireSameDevice(weight.Packed, "weight", bias, name);
    }

    private static (DeviceType, int) DeviceOf(Device d) =>
        (d.type, d.type == DeviceType.CUDA ? Math.Max(d.index, 0) : -1);

    private static string Join(string prefix, string name) => prefix.Length == 0 ? name : $"{prefix}.{name}";

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // The base disposes every registered buffer (our views, the JSON, the bias); the weight's own tensors are ours.
            base.Dispose(disposing);
            _weight.Dispose();
            _registered.Clear();
            return;
        }
        base.Dispose(disposing);
    }
}
