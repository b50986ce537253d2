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
        using var mask = keep is null ? null : keep.dtype == ScalarType.Bool ? keep.alias() : keep.ne(0);
        return SwiGluNf4LoraLinearFunction.Apply(new SwiGluNf4LoraLinearPlan(plan, native), gate, up, bias, loraA, loraB, mask);
    }
}

/// <summary>The down projection's plan and the gate's activation.</summary>
internal sealed record SwiGluNf4LoraLinearPlan(Nf4LoraLinearPlan Linear, SlothGateActivation Activation);

internal sealed class SwiGluNf4LoraLinearFunction : SlothFunction<SwiGluNf4LoraLinearFunction, SwiGluNf4LoraLinearPlan>
{
    public override string Name => "SlothSharp.SwiGluNf4LoraLinear";

    /// <summary>inputs: gate, up, bias?, A?, B?, keep? (bool).</summary>
    protected override Tensor Forward(autograd.AutogradContext ctx, SwiGluNf4LoraLinearPlan plan, Tensor?[] inputs)
    {
        var (gate, up, bias, a, b, keep) = (inputs[0]!, inputs[1]!, inputs[2], inputs[3], inputs[4], inputs[5]);
        Tensor y;
        Tensor? xa;
        using (var h = SwiGluFunction.Run(gate, up, plan.Activation))
            y = Nf4LoraLinearFunction.ForwardMath(plan.Linear, h, bias, a, b, keep, out xa);
        if (xa is not null)
        {
            if (Recording) ctx.save_data("xa", new TensorBox(xa));
            else xa.Dispose();
        }
        if (Recording) ctx.save_for_backward([gate, up, bias!, a!, b!, keep!]);
        return y;
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, SwiGluNf4LoraLinearPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var (gate, up, bias, a, b, keep) = (saved[0]!, saved[1]!, saved[2], saved[3], saved[4], saved[5]);
        using var xa = a is null ? null : ((TensorBox)ctx.get_data("xa")).Take()[0];
        var needH = gate.requires_grad || up.requires_grad;
        Tensor? dGate = null, dUp = null, dBias, dA, dB;
        using (var scope = NewDisposeScope())
        {
            var h = SwiGluFunction.Run(gate, up, plan.Activation);  // bit-identical to forward's
            Tensor? dh;
            (dh, dBias, dA, dB) = Nf4LoraLinearFunction.BackwardMath(plan.Linear, h, h.shape, h.dtype, bias, a, b, keep, xa, gradOutput, needH);
            dBias?.MoveToOuterDisposeScope();
            dA?.MoveToOuterDisposeScope();
            dB?.MoveToOuterDisposeScope();
            if (dh is not null)
            {
                var (dg, du) = SwiGluFunction.RunBackward(dh, gate, up, plan.Activation);
                dGate = gate.requires_grad ? dg.MoveToOuterDisposeScope() : null;
                dUp = up.requires_grad ? du.MoveToOuterDisposeScope() : null;
            }
        }
        return [dGate, dUp, dBias, dA, dB, null];
    }
}
