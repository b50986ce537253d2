using SlothSharp.Autograd;
using SlothSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

internal sealed record SoftcapFlashPlan(double Scale, double Cap);

/// <summary>The one-pass kernels (sloth_softcap_flash_forward / _backward) as one autograd node: keeps q, k, v, the mask,
/// the output and the rows' log-sum-exp (float32 [B, H, T]); backward makes the scores again tile by tile.</summary>
internal sealed class SoftcapFlashFunction : SlothFunction<SoftcapFlashFunction, SoftcapFlashPlan>
{
    public override string Name => "SlothSharp.SoftcapFlashAttention";

    protected override Tensor Forward(autograd.AutogradContext ctx, SoftcapFlashPlan plan, Tensor?[] inputs)
    {
        var (q, k, v, allowed) = (inputs[0]!, inputs[1]!, inputs[2]!, inputs[3]);
        var (b, h, t, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var output = empty_like(q);
        var lse = empty([b, h, t], ScalarType.Float32, q.device);
        using (var mask = KernelMask(allowed))
        {
            var m = MaskStrides(mask);
            Native.SoftcapFlashForward(TensorInterop.DataPtr(q), TensorInterop.DataPtr(k), TensorInterop.DataPtr(v), m.Pointer, TensorInterop.ToSloth(q.dtype, "q"), b, h, t, k.shape[2], d,
                m.Batch, m.Head, m.Row, (float)plan.Scale, (float)plan.Cap, TensorInterop.DataPtr(output), TensorInterop.DataPtr(lse),
                TensorInterop.DeviceSelector(q), 0);
        }
        if (Recording)
        {
            ctx.save_for_backward([q, k, v, allowed]);
            ctx.save_data("out", new TensorBox(output.detach().DetachFromDisposeScope(), lse.DetachFromDisposeScope()));
        }
        else lse.Dispose();
        return output;
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, SoftcapFlashPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var (q, k, v, allowed) = (saved[0]!, saved[1]!, saved[2]!, saved[3]);
        var kept = ((TensorBox)ctx.get_data("out")).Take();
        using var output = kept[0]!;
        using var lse = kept[1]!;
        var (b, h, t, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        using var dout = gradOutput.contiguous();
        using var delta = empty([b, h, t], ScalarType.Float32, q.device);
        var dq = empty_like(q);
        var dk = empty_like(k);
        var dv = empty_like(v);
        using var mask = KernelMask(allowed);
        var m = MaskStrides(mask);
        Native.SoftcapFlashBackward(TensorInterop.DataPtr(q), TensorInterop.DataPtr(k), TensorInterop.DataPtr(v), TensorInterop.DataPtr(output),
            TensorInterop.DataPtr(dout), TensorInterop.DataPtr(lse), m.Pointer, TensorInterop.ToSloth(q.dtype, "q"), b, h, t, k.shape[2], d,
            m.Batch, m.Head, m.Row, (float)plan.Scale, (float)plan.Cap, TensorInterop.DataPtr(delta), TensorInterop.DataPtr(dq),
            TensorInterop.DataPtr(dk), TensorInterop.DataPtr(dv), TensorInterop.DeviceSelector(q), 0);
        return [dq, dk, dv, null];
    }

    /// <summary>The mask with contiguous columns (a copy only when its columns are strided), or null.</summary>
    private static Tensor? KernelMask(Tensor? allowed) =>
        allowed is null ? null : allowed.shape[3] > 1 && allowed.stride(3) != 1 ? allowed.contiguous() : allowed.alias();

    private readonly record struct MaskView(nint Pointer, long Batch, long Head, long Row);

    /// <summary>The mask's first element and its element strides per batch row, head and query row (0: broadcast).</summary>
    private static MaskView MaskStrides(Tensor? mask)
    {
        if (mask is null) return new MaskView(0, 0, 0, 0);
        long Stride(int dim) => mask.shape[dim] == 1 ? 0 : mask.stride(dim);
        return new MaskView(TensorInterop.DataPtr(mask), Stride(0), Stride(1), Stride(2));
    }
}
