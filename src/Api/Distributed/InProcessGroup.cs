using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>
/// The rendezvous of an <see cref="InProcessCommunicator"/> group. A collective is two barrier phases: every rank
/// deposits its call (a reference to its tensor, no copy), then every rank computes its result from all deposits
/// (read only), then a second barrier lets the ranks write their outputs. Each rank reduces the deposits itself in
/// rank order, so every rank gets the same bits and runs are reproducible. The first failure (an exception in a
/// rank, a mismatched call, a timeout, a rank that left) aborts the group: every waiting rank throws
/// <see cref="CommunicatorAbortedException"/> instead of hanging.
/// </summary>
internal sealed class InProcessGroup
{
    internal sealed record Call(string Name, Tensor? Tensor, ReduceOp Op = ReduceOp.Sum, int Root = -1);

    private readonly Barrier _barrier;
    private readonly Call?[] _calls;
    private readonly bool[] _left;
    private readonly CancellationTokenSource _abort = new();
    private readonly object _lock = new();
    private Exception? _failure;

    public InProcessGroup(int size, TimeSpan timeout)
    {
        Size = size;
        Timeout = timeout;
        _barrier = new Barrier(size);
        _calls = new Call?[size];
        _left = new bool[size];
    }

    public int Size { get; }
    public TimeSpan Timeout { get; }

    /// <summary>Runs one collective for <paramref name="rank"/>: deposit, check that all ranks made the same call,
    /// compute this rank's result from every deposit, wait until all ranks have computed theirs.</summary>
    public T Exchange<T>(int rank, Call call, Func<Call[], T> compute)
    {
        ThrowIfAborted(rank, call.Name);
        _calls[rank] = call;
        Wait(rank, call.Name);
        T result;
        try
        {
            var calls = Snapshot(rank, call);
            result = compute(calls);
        }
        catch (Exception e) when (e is not CommunicatorAbortedException)
        {
            Abort(new CommunicatorAbortedException($"rank {rank} failed in {call.Name}: {e.Message}", e));
            throw;
        }
        Wait(rank, call.Name);
        _calls[rank] = null;
        return result;
    }

    /// <summary>The deposits after the first barrier, checked for agreement (same collective, dtype, shape, op, root).</summary>
    private Call[] Snapshot(int rank, Call mine)
    {
        var calls = new Call[Size];
        for (var r = 0; r < Size; r++)
        {
            var c = _calls[r];
            if (c is null)
                throw Abort(new CommunicatorAbortedException($"rank {rank} called {mine.Name}, but rank {r} has left the group (its communicator was disposed)"));
            calls[r] = c;
        }
        var first = calls[0];
        for (var r = 1; r < Size; r++)
        {
            var c = calls[r];
            string? why = null;
            if (c.Name != first.Name) why = $"rank 0 called {first.Name}, rank {r} called {c.Name}";
            else if (c.Op != first.Op) why = $"{c.Name}: rank 0 reduces with {first.Op}, rank {r} with {c.Op}";
            else if (c.Root != first.Root) why = $"{c.Name}: rank 0 names root {first.Root}, rank {r} root {c.Root}";
            else if (first.Tensor is { } a && c.Tensor is { } b)
            {
                if (a.dtype != b.dtype) why = $"{c.Name}: rank 0 sends {a.dtype}, rank {r} sends {b.dtype}";
                else if (!a.shape.SequenceEqual(b.shape))
                    why = $"{c.Name}: rank 0 sends [{string.Join(", ", a.shape)}], rank {r} sends [{string.Join(", ", b.shape)}]";
            }
            if (why is not null) throw Abort(new CommunicatorAbortedException($"the ranks' collectives do not match: {why}"));
        }
        return calls;
    }

    private void Wait(int rank, string what)
    {
        bool arrived;
        try
        {
            arrived = _barrier.SignalAndWait(Timeout, _abort.Token);
        }
        catch (OperationCanceledException)
        {
            throw Aborted(rank, what);
        }
        if (!arrived)
            throw Abort(new CommunicatorAbortedException(
                $"rank {rank} waited {Timeout.TotalSeconds:0.#} s in {what} for the other ranks (a rank that never calls it, or a hang)"));
    }

    /// <summary>Removes a rank for good (its communicator was disposed): ranks that still wait see it as gone.</summary>
    public void Leave(int rank)
    {
        lock (_lock)
        {
            if (_left[rank]) return;
            _left[rank] = true;
        }
        _calls[rank] = null;
        try
        {
            _barrier.RemoveParticipant();
        }
        catch (InvalidOperationException)
        {
            // A barrier whose phase is being completed or already without participants: the group is over anyway.
        }
    }

    /// <summary>Records the first failure and wakes every waiting rank. Returns the exception to throw: this one, or,
    /// when the group had failed already, one that carries the first failure (what every rank then reports).</summary>
    public CommunicatorAbortedException Abort(CommunicatorAbortedException failure)
    {
        Exception first;
        lock (_lock) first = _failure ??= failure;
        _abort.Cancel();
        return ReferenceEquals(first, failure)
            ? failure
            : new CommunicatorAbortedException($"the group had failed already: {first.Message}", first);
    }

    private void ThrowIfAborted(int rank, string what)
    {
        if (_abort.IsCancellationRequested) throw Aborted(rank, what);
    }

    private CommunicatorAbortedException Aborted(int rank, string what)
    {
        Exception? cause;
        lock (_lock) cause = _failure;
        return new CommunicatorAbortedException(
            $"rank {rank}: {what} aborted because the group failed{(cause is null ? "" : $": {cause.Message}")}", cause);
    }
}
