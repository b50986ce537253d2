using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>
/// The rows of a row-wise op whose label is not ignore_index (one device reduction and one host read). Ops drop the
/// ignored rows before any GEMM with <see cref="Select"/> and put per-row results back with <c>Scatter</c>.
/// When every row is kept there is no index and both are the identity (no copy).
/// Tensors made here belong to the caller's dispose scope.
/// </summary>
internal sealed class IgnoredRows
{
    private IgnoredRows(long total, long kept, Tensor? index) => (Total, Kept, Index) = (total, kept, index);

    /// <summary>All rows (the length of the labels).</summary>
    public long Total { get; }

    /// <summary>Rows whose label differs from ignore_index.</summary>
    public long Kept { get; }

    /// <summary>True when no row is ignored.</summary>
    public bool All => Kept == Total;

    /// <summary>int64 indices of the kept rows, null when <see cref="All"/>.</summary>
    public Tensor? Index { get; }

    /// <summary>labels: int64 [N] (flat).</summary>
    public static IgnoredRows Of(Tensor labels, long ignoreIndex)
    {
        var total = labels.shape[0];
        using var keep = labels.ne(ignoreIndex);
        using var sum = keep.sum();
        var kept = sum.item<long>();
        return new IgnoredRows(total, kept, kept == total ? null : keep.nonzero().flatten());
    }

    /// <summary>Number of labels (any shape) that differ from ignore_index.</summary>
    public static long Count(Tensor labels, long ignoreIndex)
    {
        using var keep = labels.ne(ignoreIndex);
        using var sum = keep.sum();
        return sum.item<long>();
    }

    /// <summary>The kept rows of t (dim 0).</summary>
    public Tensor Select(Tensor t) => All ? t : t.index_select(0, Index!);

    /// <summary>Kept-row values back into zeros of <paramref name="like"/>'s shape (ignored rows get 0).</summary>
    public Tensor Scatter(Tensor keptRows, Tensor like) => All ? keptRows : zeros_like(like).index_copy_(0, Index!, keptRows);

    /// <summary>Kept-row values of a 1-D result back into zeros of length <see cref="Total"/>.</summary>
    public Tensor Scatter(Tensor keptRows) => All ? keptRows
        : zeros(Total, keptRows.dtype, keptRows.device).index_copy_(0, Index!, keptRows);
}
