using SlothSharp.Autograd;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>SwiGLU, <c>silu(gate) * up</c> (the Llama MLP's activation), in one fused kernel per direction
/// (sloth_swiglu_forward / _backward) with the roundings of that PyTorch expression in the inputs' dtype.</summary>
public static class SwiGlu
{
    /// <summary>gate, up: the same shape, float32/float16/bfloat16, one device. Returns silu(gate) * up.
    /// Differentiable in both.</summary>
    public static Tensor Apply(Tensor gate, Tensor up)
    {
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        OpChecks.FloatingSameDtype(gate, nameof(gate), up, nameof(up));
        if (!gate.shape.SequenceEqual(up.shape))
            throw new ArgumentException($"up {OpChecks.Shape(up)} must have the shape of gate {OpChecks.Shape(gate)}", nameof(up));
        return SwiGluFunction.Apply(SwiGluPlan.Instance, gate, up);
    }
}

internal sealed record SwiGluPlan
{
    public static readonly SwiGluPlan Instance = new();
}

internal sealed class SwiGluFunction : SlothFunction<SwiGluFunction, SwiGluPlan>
{
    public override string Name => "SlothSharp.SwiGlu";

    protected override Tensor Forward(autograd.AutogradContext ctx, SwiGluPlan plan, Tensor?[] inputs)
    {
        var output = Run(inputs[0]!, inputs[1]!);
        if (Recording) ctx.save_for_backward([inputs[0]!, inputs[1]!]);
        return output;
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, SwiGluPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var (dGate, dUp) = RunBackward(gradOutput, saved[0]!, saved[1]!);
        return [dGate, dUp];
    }

    /// <summary>silu(gate) · up through the kernel (a new tensor; no autograd).</summary>
    internal static Tensor Run(Tensor gateIn, Tensor upIn)
    {
        using var gate = gateIn.contiguous();
        using var up = upIn.contiguous();
        var output = empty_like(gate);
        Native.SwigluForward(TensorInterop.DataPtr(gate), TensorInterop.DataPtr(up), TensorInterop.ToSloth(gate.dtype, "gate"),
            gate.numel(), TensorInterop.DataPtr(output), TensorInterop.DeviceSelector(gate), 0);
        return output;
    }

    /// <summary>(dGate, dUp) for upstream dY through the kernel (new tensors; no autograd).</summary>
    internal static (Tensor DGate, Tensor DUp) RunBackward(Tensor gradOutput, Tensor gateIn, Tensor upIn)
    {
        using var gate = gateIn.contiguous();
        using var up = upIn.contiguous();
        using var dy = gradOutput.contiguous();
        var dGate = empty_like(gate);
        var dUp = empty_like(up);
        Native.SwigluBackward(TensorInterop.DataPtr(dy), TensorInterop.DataPtr(gate), TensorInterop.DataPtr(up),
            TensorInterop.ToSloth(gate.dtype, "gate"), gate.numel(), TensorInterop.DataPtr(dGate), TensorInterop.DataPtr(dUp),
            TensorInterop.DeviceSelector(gate), 0);
        return (dGate, dUp);
    }
}
