using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// The element-wise and row-wise work of one block of soft-capped attention between its matmuls, in one kernel per
/// direction (sloth_softcap_softmax_forward / _backward): the soft-cap with the eager expression's dtype roundings,
/// the mask, the float32 softmax and (backward) the gradient of both. Scores come as the matmul returns them
/// (contiguous [B, H, rows, cols]); the mask is the block's narrow view of the [B|1, H|1, T, L] mask, read in place
/// through its strides (no expanded copy per block). <see cref="ReferenceForward"/> and <see cref="ReferenceBackward"/>
/// are the TorchSharp expressions the kernels replace (tests compare with them).
/// </summary>
internal static class SoftcapSoftmax
{
    /// <summary>probs = round(softmax_f32(mask(round(cap · tanh(s0 · scale / cap))))) for s0 [B, H, n, c]; a new tensor
    /// in s0's dtype. allowed: bool [B|1, H|1, n, c] with contiguous columns, or null (every key).</summary>
    public static Tensor Forward(Tensor s0, Tensor? allowed, double scale, double cap)
    {
        var (dtype, mask) = Check(s0, null, allowed, cap);
        var probs = empty_like(s0);
        var (b, h, n, c) = (s0.shape[0], s0.shape[1], s0.shape[2], s0.shape[3]);
        Native.SoftcapSoftmaxForward(TensorInterop.DataPtr(s0), mask.Pointer, dtype, b, h, n, c, mask.BatchStride,
            mask.HeadStride, mask.RowStride, (float)scale, (float)cap, TensorInterop.DataPtr(probs),
            TensorInterop.DeviceSelector(s0), 0);
        GC.KeepAlive(allowed);
        return probs;
    }

    /// <summary>For the recomputed s0 and dp = dout · vᵀ (both [B, H, n, c], one dtype): the forward's probs and the
    /// gradient of s0 (new tensors in the dtype), with the roundings of autograd through <see cref="ReferenceForward"/>.</summary>
    public static (Tensor Probs, Tensor GradScores) Backward(Tensor s0, Tensor dp, Tensor? allowed, double scale, double cap)
    {
        var (dtype, mask) = Check(s0, dp, allowed, cap);
        var probs = empty_like(s0);
        var grad = empty_like(s0);
        var (b, h, n, c) = (s0.shape[0], s0.shape[1], s0.shape[2], s0.shape[3]);
        Native.SoftcapSoftmaxBackward(TensorInterop.DataPtr(s0), TensorInterop.DataPtr(dp), mask.Pointer, dtype, b, h, n, c,
            mask.BatchStride, mask.HeadStride, mask.RowStride, (float)scale, (float)cap, TensorInterop.DataPtr(probs),
            TensorInterop.DataPtr(grad), TensorInterop.DeviceSelector(s0), 0);
        GC.KeepAlive(allowed);
        return (probs, grad);
    }

    /// <summary>The eager expression the forward kernel replaces: (tanh in the dtype, float32 probabilities).</summary>
    internal static (Tensor Tanh, Tensor Probs) ReferenceForward(Tensor s0, Tensor? allowed, double scale, double cap)
    {
        var tanh = (s0 * scale / cap).tanh();
        var scores = tanh * cap;
        if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        return (tanh, scores.softmax(-1, ScalarType.Float32));
    }

    /// <summary>The backward expression the backward kernel replaces, step by step in its dtypes: the float32 softmax's
    /// gradient rounded to the dtype of its input, then · cap, tanh′, / cap, · scale. Returns (probs, dS0) in the dtype.</summary>
    internal static (Tensor Probs, Tensor GradScores) ReferenceBackward(Tensor s0, Tensor dp, Tensor? allowed, double scale, double cap)
    {
        var (tanh, p32) = ReferenceForward(s0, allowed, scale, cap);
        var dp32 = dp.to(ScalarType.Float32);
        var ds = (p32 * (dp32 - (dp32 * p32).sum(-1, keepdim: true))).to(s0.dtype);
        return (p32.to(s0.dtype), ds * cap * (1 - tanh * tanh) / cap * scale);
    }

    private static (SlothDtype Dtype, SoftcapMask Mask) Check(Tensor s0, Tensor? dp, Tensor? allowed, double cap)
    {
        ArgumentNullException.ThrowIfNull(s0);
        if (s0.ndim != 4) throw new ArgumentException($"scores must be [B, H, rows, cols]; got {OpChecks.Shape(s0)}", nameof(s0));
        var dtype = TensorInterop.ToSloth(s0.dtype, "scores");
        TensorInterop.DeviceSelector(s0);
        TensorInterop.RequireContiguous(s0, "scores");
        if (s0.shape[3] < 1) throw new ArgumentException("scores must have at least one column", nameof(s0));
        if (!(cap > 0) || double.IsInfinity(cap)) throw new ArgumentOutOfRangeException(nameof(cap), cap, "the soft-cap must be positive and finite");
        if (dp is not null)
        {
            OpChecks.FloatingSameDtype(s0, "scores", dp, "grad_probs");
            if (!dp.shape.SequenceEqual(s0.shape))
                throw new ArgumentException($"grad_probs {OpChecks.Shape(dp)} must have the shape of scores {OpChecks.Shape(s0)}", nameof(dp));
            TensorInterop.RequireContiguous(dp, "grad_probs");
        }
        return (dtype, Mask(s0, allowed));
    }

    private static SoftcapMask Mask(Tensor s0, Tensor? allowed)
    {
        if (allowed is null) return default;
        if (allowed.dtype != ScalarType.Bool || allowed.ndim != 4 || allowed.shape[2] != s0.shape[2] || allowed.shape[3] != s0.shape[3] ||
            allowed.shape[0] != 1 && allowed.shape[0] != s0.shape[0] || allowed.shape[1] != 1 && allowed.shape[1] != s0.shape[1])
            throw new ArgumentException($"allowed must be bool [{s0.shape[0]} or 1, {s0.shape[1]} or 1, {s0.shape[2]}, {s0.shape[3]}]; " +
                                        $"got {allowed.dtype} {OpChecks.Shape(allowed)}", nameof(allowed));
        TensorInterop.RequireSameDevice(s0, "scores", allowed, "allowed");
        if (allowed.shape[3] > 1 && allowed.stride(3) != 1)
            throw new ArgumentException("allowed must have contiguous columns (stride 1 in its last dimension)", nameof(allowed));
        return SoftcapMask.Of(allowed);
    }
}
