using SlothSharp.Ops;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>
/// One decoder projection (q/k/v/o, qkv, gate/up/down, gate_up): a frozen base — NF4 through <see cref="Linear4bit"/>,
/// or dense for the reference model — that an optional <see cref="LoraAdapter"/> wraps. The only place that knows how a
/// projection's base is stored. Registered names equal the checkpoint's: dense <c>weight</c> [out, in] (+ <c>bias</c>);
/// NF4 <c>weight</c> (packed uint8 [n/2, 1]) with bitsandbytes' <c>weight.absmax</c>, <c>weight.quant_map</c>,
/// <c>weight.nested_absmax</c>, <c>weight.nested_quant_map</c>, <c>weight.quant_state.bitsandbytes__nf4</c>; the
/// adapter's <c>lora_A.weight</c> [r, in] and <c>lora_B.weight</c> [out, r], float32. How it computes is the model's
/// <see cref="DecoderKernels"/>, chosen once for the whole model.
/// </summary>
internal sealed class Projection : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    private Linear4bit? _nf4;
    private Tensor? _dense;
    private Tensor? _bias;

    private Projection(string name, long outFeatures, long inFeatures) : base(name)
    {
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
    }

    public long InFeatures { get; }
    public long OutFeatures { get; }
    public bool IsQuantized => _nf4 is not null;

    /// <summary>The model's kernels (set by <see cref="CausalLM.UseFusedKernels"/>).</summary>
    internal DecoderKernels Kernels { get; set; } = DecoderKernels.Reference;

    public LoraAdapter? Lora { get; private set; }

    /// <summary>A dense projection: weight [out, in] and bias [out] already in the compute dtype on the device.</summary>
    public static Projection Dense(string name, Tensor weight, Tensor? bias)
    {
        var l = new Projection(name, weight.shape[0], weight.shape[1]);
        var w = new Parameter(weight, requires_grad: false);
        l.register_parameter("weight", w);
        l._dense = w;
        l.RegisterBias(bias);
        return l;
    }

    /// <summary>An NF4 projection (the weight and bias already on the device; the bias in the compute dtype).</summary>
    public static Projection Quantized(string name, Nf4Weight weight, Tensor? bias)
    {
        var l = new Projection(name, weight.Shape[0], weight.Shape[1]);
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

    /// <summary>W + scale·B·A in float32 (the base dequantized), as merging writes it; a new tensor.</summary>
    public Tensor MergedWeight()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var w = DenseWeight(ScalarType.Float32);
        if (Lora is { } l) w = w + l.B.weight!.to(ScalarType.Float32).matmul(l.A.weight!.to(ScalarType.Float32)) * l.Scale;
        return w.MoveToOuterDisposeScope();
    }

    public Tensor? Bias => _bias;

    /// <summary>The dense base weight [out, in] itself (null for NF4): the decoding engine reads it in place.</summary>
    internal Tensor? DenseBase => _dense;

    public Nf4Weight? Nf4 => _nf4?.Weight;

    /// <summary>The 4-bit layer itself (its registered buffers are views of <see cref="Nf4"/>'s tensors; sharding
    /// re-points them too).</summary>
    internal Linear4bit? Nf4Layer => _nf4;

    /// <summary>Wraps the base in a LoRA adapter (see <see cref="LoraAdapter"/>).</summary>
    public void AddLora(int rank, double scale, double dropout, Generator gen)
    {
        if (Lora is not null) throw new InvalidOperationException($"{GetName()} already has a LoRA adapter");
        var device = _nf4?.Weight.Device ?? _dense!.device;
        Lora = new LoraAdapter(InFeatures, OutFeatures, rank, scale, dropout, gen, device);
        register_module("lora_A", Lora.A);
        register_module("lora_B", Lora.B);
    }

    /// <summary>The projection through the model's kernels.</summary>
    public override Tensor forward(Tensor x) => Kernels.Linear(this, x);

    /// <summary>The projection of a norm output (q/k/v or qkv, gate/up or gate_up), through the model's kernels.</summary>
    public Tensor Forward(NormedInput x) => Kernels.Linear(this, x);

    /// <summary>This projection of act(gate)·up (the MLP's down projection), through the model's kernels.</summary>
    public Tensor ForwardGated(Tensor gate, Tensor up, GateActivation activation) => Kernels.GatedLinear(this, gate, up, activation);

    /// <summary>This projection of act(gate)·up from a fused gate_up_proj's output [.., 2 × intermediate] (gate half,
    /// then up half), through the model's kernels.</summary>
    public Tensor ForwardGatedPacked(Tensor gateUp, GateActivation activation) => Kernels.GatedLinearPacked(this, gateUp, activation);

    /// <summary>The plain TorchSharp computation: base (NF4 dequantized by <see cref="Linear4bit"/>, or dense) plus the
    /// adapter's delta with the same dropout draw as the fused node.</summary>
    internal Tensor ReferenceForward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = _nf4 is not null ? _nf4.forward(x) : functional.linear(x, _dense!, _bias);
        if (Lora is not { } lora) return y.MoveToOuterDisposeScope();
        // The adapter branch in the compute dtype (issue 13: float32 parameters cast to the compute dtype in forward;
        // their gradients still land in float32). Computing it in float32 instead saved float32 copies of every
        // projection input for backward (~10 GB at the 1B shape) and did not close the bf16 gap to PEFT.
        using var keep = lora.KeepMask(x.shape, x.device, training);
        return (y + lora.Delta(x, keep)).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _nf4?.Dispose();
        base.Dispose(disposing);
    }
}
