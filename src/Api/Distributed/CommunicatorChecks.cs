using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>Argument checks shared by the communicators (so both report the same errors for the same mistakes).</summary>
internal static class CommunicatorChecks
{
    public static void InPlace(Tensor tensor, string name)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (!tensor.is_contiguous())
            throw new ArgumentException($"{name} must be contiguous: collectives work in place on its memory (call .contiguous() and copy back)", name);
    }

    public static void Rows(Tensor tensor, string name)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.ndim < 1)
            throw new ArgumentException($"{name} must have at least one dimension (rows are split along dimension 0); got a scalar", name);
    }

    /// <summary>Rows of this rank's part of a [Size·n, …] tensor.</summary>
    public static long ScatterRows(Tensor full, int size, string name)
    {
        Rows(full, name);
        if (full.shape[0] % size != 0)
            throw new ArgumentException($"{name} has {full.shape[0]} rows, which {size} ranks cannot split evenly (pad it to a multiple of {size})", name);
        return full.shape[0] / size;
    }

    public static void Root(int root, int size)
    {
        if (root < 0 || root >= size) throw new ArgumentOutOfRangeException(nameof(root), root, $"must be a rank in [0, {size})");
    }

    public static void Op(ReduceOp op)
    {
        if (op is not (ReduceOp.Sum or ReduceOp.Avg or ReduceOp.Max))
            throw new ArgumentOutOfRangeException(nameof(op), op, "not a ReduceOp");
    }
}
