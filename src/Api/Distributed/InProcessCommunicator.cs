using System.Runtime.ExceptionServices;
using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>
/// Ranks as threads of one process (<see cref="Run{T}"/> starts them): the collectives of
/// <see cref="ICommunicator"/> over tensors in this process's memory, for tests and CPU runs of distributed code.
/// Reductions run in rank order on every rank (((t₀ + t₁) + t₂) …), so results are bit-reproducible and identical on
/// all ranks. Any dtype NCCL supports (uint8, int8, int32, int64, float16, bfloat16, float32, float64); every rank's
/// tensors must agree in dtype and shape (checked: a mismatch aborts the group with a message naming both ranks).
/// </summary>
public sealed class InProcessCommunicator : ICommunicator
{
    /// <summary>How long a rank waits in a collective for the others before the group is aborted.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(5);

    private readonly InProcessGroup _group;
    private bool _disposed;

    private InProcessCommunicator(InProcessGroup group, int rank)
    {
        _group = group;
        Rank = rank;
    }

    public int Rank { get; }
    public int Size => _group.Size;

    /// <summary>The communicators of a new group of <paramref name="size"/> ranks, index = rank. Give each to its own
    /// thread; dispose each when its rank is done.</summary>
    public static IReadOnlyList<InProcessCommunicator> CreateGroup(int size, TimeSpan? timeout = null)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, "a group needs at least one rank");
        var wait = timeout ?? DefaultTimeout;
        if (wait <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), wait, "must be positive");
        var group = new InProcessGroup(size, wait);
        return Enumerable.Range(0, size).Select(r => new InProcessCommunicator(group, r)).ToArray();
    }

    /// <summary>Runs <paramref name="body"/> once per rank, each on its own thread with its own communicator, and
    /// returns the results by rank. When a rank throws, the others are released from their collectives
    /// (<see cref="CommunicatorAbortedException"/>) and the first rank's own exception is rethrown here.</summary>
    public static T[] Run<T>(int size, Func<ICommunicator, T> body, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        var comms = CreateGroup(size, timeout);
        var results = new T[size];
        var errors = new Exception?[size];
        var threads = new Thread[size];
        for (var r = 0; r < size; r++)
        {
            var rank = r;
            // A larger stack than the default: TorchSharp and autograd recurse deeply on some paths.
            threads[r] = new Thread(() =>
            {
                var comm = comms[rank];
                try
                {
                    results[rank] = body(comm);
                }
                catch (Exception e)
                {
                    errors[rank] = e;
                    if (e is not CommunicatorAbortedException)
                        comm._group.Abort(new CommunicatorAbortedException($"rank {rank} failed: {e.Message}", e));
                }
                finally
                {
                    comm.Dispose();
                }
            }, 16 << 20) { IsBackground = true, Name = $"SlothSharp rank {rank}/{size}" };
        }
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        var root = errors.FirstOrDefault(e => e is not null and not CommunicatorAbortedException)
                   ?? errors.FirstOrDefault(e => e is not null);
        if (root is not null) ExceptionDispatchInfo.Capture(root).Throw();
        return results;
    }

    /// <inheritdoc cref="Run{T}"/>
    public static void Run(int size, Action<ICommunicator> body, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        Run(size, c =>
        {
            body(c);
            return 0;
        }, timeout);
    }

    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        CommunicatorChecks.InPlace(tensor, nameof(tensor));
        CommunicatorChecks.Op(op);
        CheckDtype(tensor, nameof(tensor));
        using var result = Exchange(new InProcessGroup.Call(nameof(AllReduce), tensor, op),
            calls => Reduce(calls.Select(c => c.Tensor!).ToArray(), op, tensor.device));
        using (no_grad()) tensor.copy_(result);
    }

    public Tensor AllGather(Tensor shard)
    {
        CommunicatorChecks.Rows(shard, nameof(shard));
        CheckDtype(shard, nameof(shard));
        return Exchange(new InProcessGroup.Call(nameof(AllGather), shard), calls =>
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var parts = calls.Select(c => c.Tensor!.detach().to(shard.device)).ToArray();
            return cat(parts, 0).MoveToOuterDisposeScope();
        });
    }

    public Tensor ReduceScatter(Tensor full, ReduceOp op = ReduceOp.Sum)
    {
        var rows = CommunicatorChecks.ScatterRows(full, Size, nameof(full));
        CommunicatorChecks.Op(op);
        CheckDtype(full, nameof(full));
        return Exchange(new InProcessGroup.Call(nameof(ReduceScatter), full, op), calls =>
        {
            using var scope = NewDisposeScope();
            var mine = calls.Select(c => c.Tensor!.narrow(0, Rank * rows, rows)).ToArray();
            return Reduce(mine, op, full.device).MoveToOuterDisposeScope();
        });
    }

    public void Broadcast(Tensor tensor, int root)
    {
        CommunicatorChecks.InPlace(tensor, nameof(tensor));
        CommunicatorChecks.Root(root, Size);
        CheckDtype(tensor, nameof(tensor));
        using var result = Exchange(new InProcessGroup.Call(nameof(Broadcast), tensor, Root: root), calls =>
        {
            using var noGrad = no_grad();
            return calls[root].Tensor!.detach().to(tensor.device, copy: true);
        });
        if (Rank != root)
            using (no_grad()) tensor.copy_(result);
    }

    public void Barrier() => Exchange(new InProcessGroup.Call(nameof(Barrier), null), _ => 0);

    /// <summary>Leaves the group: ranks that later wait for this one fail at once instead of timing out.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _group.Leave(Rank);
    }

    private T Exchange<T>(InProcessGroup.Call call, Func<InProcessGroup.Call[], T> compute)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _group.Exchange(Rank, call, compute);
    }

    /// <summary>op over the tensors in rank order, into a new tensor on <paramref name="device"/>.</summary>
    private Tensor Reduce(Tensor[] tensors, ReduceOp op, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var acc = tensors[0].detach().to(device, copy: true).contiguous();
        for (var r = 1; r < tensors.Length; r++)
        {
            var t = tensors[r].detach().to(device);
            if (op == ReduceOp.Max) acc = maximum(acc, t);
            else acc.add_(t);
        }
        if (op == ReduceOp.Avg)
        {
            if (acc.is_floating_point()) acc.div_(Size);
            else acc = acc.div(Size, RoundingMode.trunc);
        }
        return acc.MoveToOuterDisposeScope();
    }

    private static void CheckDtype(Tensor t, string name)
    {
        if (t.dtype is not (ScalarType.Byte or ScalarType.Int8 or ScalarType.Int32 or ScalarType.Int64 or ScalarType.Float16
                or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64))
            throw new ArgumentException($"{name} is {t.dtype}; collectives take uint8, int8, int32, int64, float16, bfloat16, float32 or float64", name);
    }
}
