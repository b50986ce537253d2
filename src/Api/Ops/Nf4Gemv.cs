using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// <c>x · Wᵀ</c> for a few activation rows (batch-1 decoding, up to <see cref="MaxRows"/> sequences at once) with W an
/// NF4 weight, dequantized inside the dot product by one kernel (sloth_nf4_gemv): the weight is read once at 0.5 byte
/// per element and no dequantized copy is made, which is what bounds a decoding step. Each weight is rounded to x's
/// dtype as <see cref="Nf4Weight.Dequantize"/> would, and the products are summed in float32, so the result is
/// <c>x · weight.Dequantize(x.dtype)ᵀ</c> up to the order of the float32 sum. For inference: no gradient.
/// </summary>
public static class Nf4Gemv
{
    /// <summary>The most rows of x one call takes (SLOTH_NF4_GEMV_MAX_BATCH); use a GEMM on the dequantized weight
    /// (or <see cref="Nf4LoraLinear"/>) for more.</summary>
    public const int MaxRows = SlothConstants.Nf4GemvMaxBatch;

    /// <summary>x: [b, K] float32/float16/bfloat16 with 1 ≤ b ≤ <see cref="MaxRows"/> (made contiguous if it is not);
    /// weight: NF4 [M, K] on x's device. Returns a new [b, M] tensor in x's dtype. On CUDA the kernel is queued on the
    /// default stream and not synchronized. Not differentiable: x must not require a gradient while grad mode is on.</summary>
    public static Tensor Apply(Tensor x, Nf4Weight weight)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ObjectDisposedException.ThrowIf(weight.IsDisposed, weight);
        var dtype = TensorInterop.ToSloth(x.dtype, nameof(x));
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"weight must be a 2-D [out, in] NF4 weight; got [{string.Join(", ", weight.Shape)}]", nameof(weight));
        var (m, k) = (weight.Shape[0], weight.Shape[1]);
        if (x.ndim != 2 || x.shape[1] != k)
            throw new ArgumentException($"x {OpChecks.Shape(x)} must be [b, {k}] (in_features of the weight [{m}, {k}])", nameof(x));
        var b = x.shape[0];
        if (b < 1 || b > MaxRows)
            throw new ArgumentException($"x has {b} rows; Nf4Gemv takes 1 to {MaxRows} (use a GEMM for more)", nameof(x));
        TensorInterop.RequireSameDevice(weight.Packed, nameof(weight), x, nameof(x));
        if (x.requires_grad && is_grad_enabled())
            throw new ArgumentException("x requires a gradient, but Nf4Gemv has no backward; call it under no_grad() " +
                                        "or use Nf4LoraLinear for training", nameof(x));
        using var xc = x.contiguous();
        var y = empty([b, m], x.dtype, x.device);
        try
        {
            Native.Nf4Gemv(TensorInterop.DataPtr(xc), dtype, b, k, m, TensorInterop.DataPtr(weight.Packed),
                TensorInterop.DataPtr(weight.AbsmaxCodes), TensorInterop.DataPtr(weight.NestedCodeMap),
                TensorInterop.DataPtr(weight.NestedAbsmax), TensorInterop.DataPtr(weight.NestedOffset),
                TensorInterop.DataPtr(weight.CodeTable), weight.Blocksize, weight.NestedBlocksize, TensorInterop.DataPtr(y),
                TensorInterop.DeviceSelector(xc), 0);
            return y;
        }
        catch
        {
            y.Dispose();
            throw;
        }
    }
}
