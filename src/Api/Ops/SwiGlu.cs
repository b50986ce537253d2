using SlothSharp.Autograd;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>The gated MLP activation <c>act(gate) * up</c> in one fused kernel per direction (sloth_swiglu_forward /
/// _backward) with the roundings of that PyTorch expression in the inputs' dtype (the activation computed in float32
/// and rounded, then the product rounded): SwiGLU with <see cref="GateActivation.Silu"/> (Llama, Qwen, Mistral, Phi-3),
/// GeGLU with <see cref="GateActivation.GeluTanh"/> (Gemma's gelu_pytorch_tanh).</summary>
public static class SwiGlu
{
    /// <summary>gate, up: the same shape, float32/float16/bfloat16, one device. Returns act(gate) * up.
    /// Differentiable in both.</summary>
    public static Tensor Apply(Tensor gate, Tensor up, GateActivation activation = GateActivation.Silu)
    {
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        var plan = SwiGluPlan.For(GateActivations.ToNative(activation, nameof(activation)));
        CheckPair(gate, up);
        return SwiGluFunction.Apply(plan, gate, up);
    }

    /// <summary>gate and up: the same float dtype, device and shape.</summary>
    internal static void CheckPair(Tensor gate, Tensor up)
    {
        OpChecks.FloatingSameDtype(gate, nameof(gate), up, nameof(up));
        if (!gate.shape.SequenceEqual(up.shape))
            throw new ArgumentException($"up {OpChecks.Shape(up)} must have the shape of gate {OpChecks.Shape(gate)}", nameof(up));
    }
}

internal sealed record SwiGluPlan(SlothGateActivation Activation)
{
    private static readonly SwiGluPlan SiluPlan = new(SlothGateActivation.Silu), GeluTanhPlan = new(SlothGateActivation.GeluTanh);

    public static SwiGluPlan For(SlothGateActivation activation) =>
        activation == SlothGateActivation.GeluTanh ? GeluTanhPlan : SiluPlan;
}

internal sealed class SwiGluFunction : SlothFunction<SwiGluFunction, SwiGluPlan>
{
    public override string Name => "SlothSharp.SwiGlu";

    protected override Tensor Forward(autograd.AutogradContext ctx, SwiGluPlan plan, Tensor?[] inputs)
    {
        var output = Run(inputs[0]!, inputs[1]!, plan.Activation);
        if (Recording) ctx.save_for_backward([inputs[0]!, inputs[1]!]);
        return output;
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, SwiGluPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var (dGate, dUp) = RunBackward(gradOutput, saved[0]!, saved[1]!, plan.Activation);
        return [dGate, dUp];
    }

    /// <summary>act(gate) · up through the kernel (a new tensor; no autograd).</summary>
    internal static Tensor Run(Tensor gateIn, Tensor upIn, SlothGateActivation activation)
    {
        using var gate = gateIn.contiguous();
        using var up = upIn.contiguous();
        var output = empty_like(gate);
        Native.SwigluForward(TensorInterop.DataPtr(gate), TensorInterop.DataPtr(up), TensorInterop.ToSloth(gate.dtype, "gate"),
            activation, gate.numel(), TensorInterop.DataPtr(output), TensorInterop.DeviceSelector(gate), 0);
        return output;
    }

    /// <summary>act(gate) · up of a packed gate/up [.., 2 × cols] (each row's first half the gate, its second the up
    /// projection: a fused gate_up_proj's output) through the kernel, without split copies. Returns [.., cols]
    /// (a new tensor; no autograd); the same bits as <see cref="Run"/> on the halves.</summary>
    internal static Tensor RunPacked(Tensor gateUpIn, SlothGateActivation activation)
    {
        using var gateUp = gateUpIn.contiguous();
        var cols = gateUp.shape[^1] / 2;
        var output = empty([.. gateUp.shape[..^1], cols], gateUp.dtype, gateUp.device);
        if (output.numel() == 0) return output;
        Native.SwigluPackedForward(TensorInterop.DataPtr(gateUp), TensorInterop.ToSloth(gateUp.dtype, "gate_up"), activation,
            output.numel() / cols, cols, TensorInterop.DataPtr(output), TensorInterop.DeviceSelector(gateUp), 0);
        return output;
    }

    /// <summary>The gradient of <see cref="RunPacked"/> for upstream dY [.., cols]: d(gate/up) [.., 2 × cols] in the packed
    /// layout, one tensor (autograd would otherwise join the two halves' gradients). A new tensor; no autograd.</summary>
    internal static Tensor RunPackedBackward(Tensor gradOutput, Tensor gateUpIn, SlothGateActivation activation)
    {
        using var gateUp = gateUpIn.contiguous();
        using var dy = gradOutput.contiguous();
        var cols = gateUp.shape[^1] / 2;
        var dGateUp = empty_like(gateUp);
        if (dy.numel() == 0) return dGateUp;
        Native.SwigluPackedBackward(TensorInterop.DataPtr(dy), TensorInterop.DataPtr(gateUp), TensorInterop.ToSloth(gateUp.dtype, "gate_up"),
            activation, dy.numel() / cols, cols, TensorInterop.DataPtr(dGateUp), TensorInterop.DeviceSelector(gateUp), 0);
        return dGateUp;
    }

    /// <summary>(dGate, dUp) for upstream dY through the kernel (new tensors; no autograd).</summary>
    internal static (Tensor DGate, Tensor DUp) RunBackward(Tensor gradOutput, Tensor gateIn, Tensor upIn,
                                                           SlothGateActivation activation)
    {
        using var gate = gateIn.contiguous();
        using var up = upIn.contiguous();
        using var dy = gradOutput.contiguous();
        var dGate = empty_like(gate);
        var dUp = empty_like(up);
        Native.SwigluBackward(TensorInterop.DataPtr(dy), TensorInterop.DataPtr(gate), TensorInterop.DataPtr(up),
            TensorInterop.ToSloth(gate.dtype, "gate"), activation, gate.numel(), TensorInterop.DataPtr(dGate), TensorInterop.DataPtr(dUp),
            TensorInterop.DeviceSelector(gate), 0);
        return (dGate, dUp);
    }
}
