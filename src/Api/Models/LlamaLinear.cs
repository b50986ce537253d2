using SlothSharp.Ops;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>
/// One decoder projection (q/k/v/o/gate/up/down): a frozen base weight — NF4 through <see cref="Linear4bit"/>, or dense
/// for the reference model — plus an optional LoRA adapter with PEFT's layout. The only place that knows how a
/// projection is stored, so changing the 4-bit layer type touches this class alone.
/// Registered names equal the checkpoint's: dense <c>weight</c> [out, in] (+ <c>bias</c>); NF4 <c>weight</c> (packed
/// uint8 [n/2, 1]) with bitsandbytes' <c>weight.absmax</c>, <c>weight.quant_map</c>, <c>weight.nested_absmax</c>,
/// <c>weight.nested_quant_map</c>, <c>weight.quant_state.bitsandbytes__nf4</c>; LoRA <c>lora_A.weight</c> [r, in] and
/// <c>lora_B.weight</c> [out, r], float32.
/// </summary>
internal sealed class LlamaLinear : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    private Linear4bit? _nf4;
    private Tensor? _dense;
    private Tensor? _bias;
    private Linear? _loraA, _loraB;
    private double _scale, _dropout;

    private LlamaLinear(string name, long outFeatures, long inFeatures) : base(name)
    {
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
    }

    public long InFeatures { get; }
    public long OutFeatures { get; }
    public bool IsQuantized => _nf4 is not null;
    public bool HasLora => _loraA is not null;

    /// <summary>Set by the decoder layer for one forward: the generator of the LoRA dropout masks (so a checkpointed
    /// layer's recomputation draws the same masks). Null: no dropout.</summary>
    internal Generator? DropoutGenerator { get; set; }

    /// <summary>A dense projection: weight [out, in] and bias [out] already in the compute dtype on the device.</summary>
    public static LlamaLinear Dense(string name, Tensor weight, Tensor? bias)
    {
        var l = new LlamaLinear(name, weight.shape[0], weight.shape[1]);
        var w = new Parameter(weight, requires_grad: false);
        l.register_parameter("weight", w);
        l._dense = w;
        l.RegisterBias(bias);
        return l;
    }

    /// <summary>An NF4 projection (the weight and bias already on the device; the bias in the compute dtype).</summary>
    public static LlamaLinear Quantized(string name, Nf4Weight weight, Tensor? bias)
    {
        var l = new LlamaLinear(name, weight.Shape[0], weight.Shape[1]);
        l.RegisterBias(bias);
        // Linear4bit is not registered as a child (its names would gain a level): its tensors are registered here
        // under the names bitsandbytes writes, so state_dict() keys equal the checkpoint's.
        l._nf4 = new Linear4bit(weight, l._bias);
        foreach (var (key, t) in weight.ToSafetensorsEntries("weight"))
        {
            var onDevice = t.device == weight.Device ? t : t.to(weight.Device);
            onDevice.DetachFromDisposeScope();
            l.register_buffer(key, onDevice);
        }
        return l;
    }

    private void RegisterBias(Tensor? bias)
    {
        if (bias is null) return;
        var b = new Parameter(bias, requires_grad: false);
        register_parameter("bias", b);
        _bias = b;
    }

    /// <summary>The base weight as a dense tensor [out, in] in <paramref name="dtype"/> (a new tensor).</summary>
    public Tensor DenseWeight(ScalarType dtype) => _nf4 is not null ? _nf4.Weight.Dequantize(dtype) : _dense!.to(dtype, copy: true);

    public Tensor? Bias => _bias;

    public Nf4Weight? Nf4 => _nf4?.Weight;

    /// <summary>The 4-bit layer itself (its registered buffers are views of <see cref="Nf4"/>'s tensors; sharding
    /// re-points them too).</summary>
    internal Linear4bit? Nf4Layer => _nf4;

    public (Parameter A, Parameter B)? Lora => _loraA is null ? null : (_loraA.weight!, _loraB!.weight!);

    /// <summary>Adds float32 adapters initialized as PEFT does: A ~ U(−1/√in, 1/√in) (kaiming_uniform_ with a = √5),
    /// B = 0.</summary>
    public void AddLora(int rank, double scale, double dropout, Generator gen)
    {
        if (_loraA is not null) throw new InvalidOperationException($"{GetName()} already has a LoRA adapter");
        var device = _nf4?.Weight.Device ?? _dense!.device;
        var bound = 1.0 / Math.Sqrt(InFeatures);
        _loraA = Linear(InFeatures, rank, hasBias: false, device: device, dtype: ScalarType.Float32);
        _loraB = Linear(rank, OutFeatures, hasBias: false, device: device, dtype: ScalarType.Float32);
        using (no_grad())
        {
            using var a = rand([rank, InFeatures], ScalarType.Float32, generator: gen) * (2 * bound) - bound;
            _loraA.weight!.copy_(a);
            _loraB.weight!.zero_();
        }
        register_module("lora_A", _loraA);
        register_module("lora_B", _loraB);
        _scale = scale;
        _dropout = dropout;
    }

    /// <summary>The projection; <paramref name="fused"/> runs an NF4 base through <see cref="Nf4LoraLinear"/> (one
    /// autograd node that keeps no dequantized weight between forward and backward), otherwise (or for a dense base)
    /// the plain TorchSharp ops of <see cref="forward"/>. Both draw the same dropout mask and compute the same values.</summary>
    public Tensor Forward(Tensor x, bool fused)
    {
        if (!fused || _nf4 is null) return forward(x);
        using var keep = _loraA is not null && training && _dropout > 0 && DropoutGenerator is { } g
            ? rand(x.shape, ScalarType.Float32, CPU, generator: g).ge_(_dropout).to(x.device)
            : null;
        return Nf4LoraLinear.Apply(x, _nf4.Weight, _bias, _loraA?.weight, _loraB?.weight, _scale, keep, _dropout);
    }

    /// <summary>This projection of silu(gate)·up on the fused path: one node (<see cref="SwiGluNf4LoraLinear"/>) for
    /// an NF4 base, otherwise the SwiGLU kernel and <see cref="Forward(Tensor, bool)"/>. The same dropout draw.</summary>
    public Tensor ForwardSwiGlu(Tensor gate, Tensor up)
    {
        if (_nf4 is null) return Forward(SwiGlu.Apply(gate, up), true);
        using var keep = _loraA is not null && training && _dropout > 0 && DropoutGenerator is { } g
            ? rand(gate.shape, ScalarType.Float32, CPU, generator: g).ge_(_dropout).to(gate.device)
            : null;
        return SwiGluNf4LoraLinear.Apply(gate, up, _nf4.Weight, _bias, _loraA?.weight, _loraB?.weight, _scale, keep, _dropout);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = _nf4 is not null ? _nf4.forward(x) : functional.linear(x, _dense!, _bias);
        if (_loraA is null) return y.MoveToOuterDisposeScope();
        // The adapter branch in the compute dtype (issue 13: float32 parameters cast to the compute dtype in forward;
        // their gradients still land in float32). Computing it in float32 instead (tried in 2dd5124, as PEFT does)
        // saved float32 copies of every projection input for backward (~10 GB at the 1B shape, 8 × 1024 tokens) and
        // did not close the bf16 gap to PEFT. The same operations, in the same order, as Nf4LoraLinear's fused node.
        var h = x;
        if (training && _dropout > 0 && DropoutGenerator is { } g)
        {
            // PEFT applies nn.Dropout to the adapter's input; drawn from a given generator so a recomputation
            // (gradient checkpointing) sees the same mask.
            using var keep = rand(x.shape, ScalarType.Float32, CPU, generator: g).ge_(_dropout).to(x.device);
            h = x * keep.to(x.dtype) * (1.0 / (1.0 - _dropout));
        }
        var a = _loraA.weight!.to(x.dtype);
        var b = _loraB!.weight!.to(x.dtype);
        return (y + functional.linear(functional.linear(h, a), b) * _scale).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _nf4?.Dispose();
        base.Dispose(disposing);
    }
}
