using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>
/// The process-wide state of SlothSharp's autograd functions, one instance per thread that ran a SlothSharp forward or
/// backward. Each holds (1) the gradient wrappers that this thread's backwards returned to the engine, touched only by
/// this thread, and (2) the failure of a backward whose forward ran on this thread, set by whichever thread ran that
/// backward (an Interlocked slot).
/// </summary>
/// <remarks>
/// Why per thread: TorchSharp copies the gradients a backward returns into the graph only after the managed callback
/// has returned, still on the engine thread that called it. The next SlothSharp call on that same thread therefore
/// happens after the copy, so it may dispose the wrappers; a call on any other thread may not (a concurrent backward
/// could be between its return and the copy).
/// </remarks>
internal sealed class AutogradState
{
    [ThreadStatic] private static AutogradState? _current;

    /// <summary>Every live thread's state, so that a thread can see which others hold CUDA gradients. A finished
    /// thread's state is dropped at the next scan; what it still held is left to the GC's finalizers.</summary>
    private static readonly ConcurrentDictionary<AutogradState, byte> All = new();

    private readonly List<Tensor> _returned = [];
    private readonly Thread _owner = Thread.CurrentThread;
    private Exception? _failure;

    /// <summary>The calling thread's state.</summary>
    public static AutogradState Current
    {
        get
        {
            if (_current is { } s) return s;
            s = new AutogradState();
            All.TryAdd(s, 0);
            _current = s;
            return s;
        }
    }

    private int _count;
    private int _heldCudaDevice = -1;

    /// <summary>Gradient wrappers this thread returned and still holds.</summary>
    public int Held => Volatile.Read(ref _count);

    /// <summary>CUDA devices whose gradients threads other than <paramref name="caller"/> hold (racy by nature: a
    /// hint for <see cref="EngineThreadRelease"/>, never a license to release).</summary>
    public static List<int>? CudaDevicesHeldByOthers(AutogradState caller)
    {
        List<int>? devices = null;
        foreach (var (s, _) in All)
        {
            if (!s._owner.IsAlive) { All.TryRemove(s, out _); continue; }
            if (s != caller && Volatile.Read(ref s._count) > 0 && Volatile.Read(ref s._heldCudaDevice) is >= 0 and var d
                && !(devices?.Contains(d) ?? false))
                (devices ??= []).Add(d);
        }
        return devices;
    }

    /// <summary>Keeps the wrappers of gradients just returned to the engine (owner thread only).</summary>
    public void HoldReturned(IEnumerable<Tensor?> gradients)
    {
        EnsureOwner();
        foreach (var g in gradients)
        {
            if (g is null) continue;
            _returned.Add(g);
            if (g.device_type == TorchSharp.DeviceType.CUDA) Volatile.Write(ref _heldCudaDevice, Math.Max(0, g.device_index));
        }
        Volatile.Write(ref _count, _returned.Count);
    }

    /// <summary>Disposes the wrappers this thread returned earlier: the engine copied them before this thread could run
    /// anything else (owner thread only).</summary>
    public void ReleaseReturned()
    {
        EnsureOwner();
        if (_returned.Count == 0) return;
        foreach (var t in _returned) t.Dispose();
        _returned.Clear();
        Volatile.Write(ref _count, 0);
        Volatile.Write(ref _heldCudaDevice, -1);
    }

    /// <summary>Records a backward failure for this thread (any thread may call it); the first one wins until taken.</summary>
    public void Fail(Exception e) => Interlocked.CompareExchange(ref _failure, e, null);

    /// <summary>Takes (and clears) the recorded failure.</summary>
    public Exception? TakeFailure() => Interlocked.Exchange(ref _failure, null);

    private void EnsureOwner()
    {
        if (_owner != Thread.CurrentThread)
            throw new InvalidOperationException("an autograd thread state was used by another thread");
    }
}
