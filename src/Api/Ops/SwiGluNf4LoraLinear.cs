using SlothSharp.Autograd;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// The gated MLP's tail as one autograd node: <c>down(act(gate) · up)</c> with down an NF4 projection and its LoRA
/// adapter (<see cref="Nf4LoraLinear"/>), act silu (SwiGLU: Llama, Qwen, Mistral, Phi-3) or the tanh GELU (GeGLU:
/// Gemma). The same values as <c>Nf4LoraLinear.Apply(SwiGlu.Apply(gate, up, activation), …)</c>, bit for bit; what differs is memory: the two nodes keep gate, up and the [.., intermediate] product h between forward and
/// backward, this one keeps gate and up only and recomputes h (one element-wise kernel) in backward. At the
/// Llama-3.2-1B shape (8 × 1024 tokens, MLP 8192, bf16) that is 134 MB per layer, 2.1 GB for the model.
/// </summary>
public static class SwiGluNf4LoraLinear
{
    /// <summary>gate, up: [.., intermediate], same shape and float dtype; weight: NF4 [out, intermediate]; the rest as
    /// <see cref="Nf4LoraLinear.Apply"/> (keep shaped like gate). Returns [.., out] in gate's dtype. Differentiable in gate,
    /// up, bias, loraA, loraB. <paramref name="activation"/>: the gate's activation.</summary>
    public static Tensor Apply(Tensor gate, Tensor up, Nf4Weight weight, Tensor? bias = null, Tensor? loraA = null,
                               Tensor? loraB = null, double scale = 1.0, Tensor? keep = null, double dropout = 0,
                               GateActivation activation = GateActivation.Silu)
    {
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        var native = GateActivations.ToNative(activation, nameof(activation));
        SwiGlu.CheckPair(gate, up);
        var plan = Nf4LoraLinear.Validate(gate, weight, bias, loraA, loraB, scale, keep, dropout);
        using var mask = Nf4LoraLinear.KeptAsBool(keep);
        return SwiGluNf4LoraLinearFunction.Apply(new SwiGluNf4LoraLinearPlan(plan, native), gate, up, bias, loraA, loraB, mask);
    }

    /// <summary>The same with gate and up packed in one tensor: gateUp [.., 2 × intermediate], each row's first half the
    /// gate and its second the up projection (a fused gate_up_proj's output, Phi-3/4). The activation reads the halves
    /// in place and backward returns one gradient for gateUp: no split copies in forward, and no zero-filled halves that
    /// autograd would add in backward. The same bits as <see cref="Apply"/> on the halves. keep: shaped like one half.</summary>
    public static Tensor ApplyPacked(Tensor gateUp, Nf4Weight weight, Tensor? bias = null, Tensor? loraA = null,
                                     Tensor? loraB = null, double scale = 1.0, Tensor? keep = null, double dropout = 0,
                                     GateActivation activation = GateActivation.Silu)
    {
        ArgumentNullException.ThrowIfNull(gateUp);
        var native = GateActivations.ToNative(activation, nameof(activation));
        if (gateUp.ndim < 1 || gateUp.shape[^1] % 2 != 0)
            throw new ArgumentException($"gateUp {OpChecks.Shape(gateUp)} must end in 2 × intermediate", nameof(gateUp));
        Nf4LoraLinearPlan plan;
        using (no_grad())
        using (var half = gateUp.narrow(-1, 0, gateUp.shape[^1] / 2))
            plan = Nf4LoraLinear.Validate(half, weight, bias, loraA, loraB, scale, keep, dropout);
        using var mask = Nf4LoraLinear.KeptAsBool(keep);
        return SwiGluNf4LoraLinearFunction.Apply(new SwiGluNf4LoraLinearPlan(plan, native, Packed: true), gateUp, null, bias, loraA, loraB, mask);
    }
}

/// <summary>The down projection's plan and the gate's activation; Packed: the inputs are one gate/up tensor.</summary>
internal sealed record SwiGluNf4LoraLinearPlan(Nf4LoraLinearPlan Linear, SlothGateActivation Activation, bool Packed = false);

internal sealed class SwiGluNf4LoraLinearFunction : SlothFunction<SwiGluNf4LoraLinearFunction, SwiGluNf4LoraLinearPlan>
{
    public override string Name => "SlothSharp.SwiGluNf4LoraLinear";

    /// <summary>inputs: gate, up, bias?, A?, B?, keep? (bool); packed: gate/up, null, bias?, A?, B?, keep?.</summary>
    protected override Tensor Forward(autograd.AutogradContext ctx, SwiGluNf4LoraLinearPlan plan, Tensor?[] inputs)
    {
        var (gate, up, bias, a, b, keep) = (inputs[0]!, inputs[1], inputs[2], inputs[3], inputs[4], inputs[5]);
        Tensor y;
        Tensor? xa;
        using (var h = Activate(plan, gate, up))
            y = Nf4LoraLinearFunction.ForwardMath(plan.Linear, h, bias, a, b, keep, out xa);
        if (xa is not null)
        {
            if (Recording) ctx.save_data("xa", new TensorBox(xa));
            else xa.Dispose();
        }
        if (Recording) ctx.save_for_backward([gate, up!, bias!, a!, b!, keep!]);
        return y;
    }

    /// <summary>act(gate)·up, from the two tensors or the packed one (a new tensor; no autograd).</summary>
    private static Tensor Activate(SwiGluNf4LoraLinearPlan plan, Tensor gate, Tensor? up) =>
        plan.Packed ? SwiGluFunction.RunPacked(gate, plan.Activation) : SwiGluFunction.Run(gate, up!, plan.Activation);

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, SwiGluNf4LoraLinearPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var (gate, up, bias, a, b, keep) = (saved[0]!, saved[1], saved[2], saved[3], saved[4], saved[5]);
        using var xa = a is null ? null : ((TensorBox)ctx.get_data("xa")).Take()[0];
        var needH = gate.requires_grad || up?.requires_grad == true;
        Tensor? dGate = null, dUp = null, dBias, dA, dB;
        using (var scope = NewDisposeScope())
        {
            var h = Activate(plan, gate, up);  // bit-identical to forward's
            Tensor? dh;
            (dh, dBias, dA, dB) = Nf4LoraLinearFunction.BackwardMath(plan.Linear, h, h.shape, h.dtype, bias, a, b, keep, xa, gradOutput, needH);
            dBias?.MoveToOuterDisposeScope();
            dA?.MoveToOuterDisposeScope();
            dB?.MoveToOuterDisposeScope();
            if (dh is not null && plan.Packed)
                dGate = SwiGluFunction.RunPackedBackward(dh, gate, plan.Activation).MoveToOuterDisposeScope();  // d(gate/up)
            else if (dh is not null)
            {
                var (dg, du) = SwiGluFunction.RunBackward(dh, gate, up!, plan.Activation);
                dGate = gate.requires_grad ? dg.MoveToOuterDisposeScope() : null;
                dUp = up!.requires_grad ? du.MoveToOuterDisposeScope() : null;
            }
        }
        return [dGate, dUp, dBias, dA, dB, null];
    }
}
