using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>
/// A group of <see cref="Size"/> ranks that run collectives together. Every rank must call the same collectives, in
/// the same order, with tensors of the same dtype and shape (a mismatch is an error, or with NCCL a hang or garbage:
/// NCCL cannot check it). Implementations: <see cref="NcclCommunicator"/> (CUDA tensors, one process per GPU) and
/// <see cref="InProcessCommunicator"/> (ranks as threads of one process; for tests and CPU runs).
/// Tensors of the row-wise collectives are split along dimension 0: rank r's part of a [Size·n, …] tensor is rows
/// r·n … (r+1)·n − 1.
/// </summary>
public interface ICommunicator : IDisposable
{
    /// <summary>This rank, in [0, <see cref="Size"/>).</summary>
    int Rank { get; }

    /// <summary>The number of ranks.</summary>
    int Size { get; }

    /// <summary>Replaces <paramref name="tensor"/> (contiguous) in place by <paramref name="op"/> over all ranks' tensors.</summary>
    void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum);

    /// <summary>Concatenates every rank's <paramref name="shard"/> [n, …] in rank order into a new tensor
    /// [Size·n, …] (on the shard's device).</summary>
    Tensor AllGather(Tensor shard);

    /// <summary>Reduces <paramref name="full"/> [Size·n, …] over the ranks with <paramref name="op"/> and returns this
    /// rank's rows [n, …] as a new tensor.</summary>
    Tensor ReduceScatter(Tensor full, ReduceOp op = ReduceOp.Sum);

    /// <summary>Overwrites <paramref name="tensor"/> (contiguous) on every rank with rank <paramref name="root"/>'s.</summary>
    void Broadcast(Tensor tensor, int root);

    /// <summary>Returns when every rank has called it (and, with NCCL, when this rank's queued work is done).</summary>
    void Barrier();
}
