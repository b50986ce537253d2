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
        using (var mask = SoftcapMask.Readable(allowed))
        {
            var m = SoftcapMask.Of(mask);
            Native.SoftcapFlashForward(TensorInterop.DataPtr(q), TensorInterop.DataPtr(k), TensorInterop.DataPtr(v), m.Pointer, TensorInterop.ToSloth(q.dtype, "q"), b, h, t, k.shape[2], d,
                m.BatchStride, m.HeadStride, m.RowStride, (float)plan.Scale, (float)plan.Cap, TensorInterop.DataPtr(output), TensorInterop.DataPtr(lse),
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
        using var mask = SoftcapMask.Readable(allowed);
        var m = SoftcapMask.Of(mask);
        Native.SoftcapFlashBackward(TensorInterop.DataPtr(q), TensorInterop.DataPtr(k), TensorInterop.DataPtr(v), TensorInterop.DataPtr(output),
            TensorInterop.DataPtr(dout), TensorInterop.DataPtr(lse), m.Pointer, TensorInterop.ToSloth(q.dtype, "q"), b, h, t, k.shape[2], d,
            m.BatchStride, m.HeadStride, m.RowStride, (float)plan.Scale, (float)plan.Cap, TensorInterop.DataPtr(delta), TensorInterop.DataPtr(dq),
            TensorInterop.DataPtr(dk), TensorInterop.DataPtr(dv), TensorInterop.DeviceSelector(q), 0);
        return [dq, dk, dv, null];
    }
}
