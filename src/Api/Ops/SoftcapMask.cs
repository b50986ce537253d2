using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// A soft-capped attention mask (bool [B|1, H|1, rows, cols], true = may attend) as the native kernels read it
/// (sloth_softcap_softmax_* and sloth_softcap_flash_*): its first element and its element strides per batch row, head
/// and query row, 0 where the mask has one batch row or head (broadcast); all 0 without a mask. The columns must be
/// contiguous (<see cref="Readable"/> makes them so).
/// </summary>
internal readonly record struct SoftcapMask(nint Pointer, long BatchStride, long HeadStride, long RowStride)
{
    /// <summary>The view of <paramref name="mask"/> (null: no mask); its columns must be contiguous.</summary>
    public static SoftcapMask Of(Tensor? mask)
    {
        if (mask is null) return default;
        long Stride(int dim) => mask.shape[dim] == 1 ? 0 : mask.stride(dim);
        return new SoftcapMask(TensorInterop.DataPtr(mask), Stride(0), Stride(1), Stride(2));
    }

    /// <summary>The mask with contiguous columns, the rest read through its strides: an alias of the caller's, or a
    /// contiguous copy when its columns are strided. Null without a mask; the caller disposes the result.</summary>
    public static Tensor? Readable(Tensor? allowed) =>
        allowed is null ? null : allowed.shape[3] > 1 && allowed.stride(3) != 1 ? allowed.contiguous() : allowed.alias();
}
