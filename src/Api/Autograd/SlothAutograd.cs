using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>
/// What SlothSharp's custom autograd functions report. An exception inside a backward cannot cross TorchSharp's native
/// callback (it would end the process), so <see cref="SlothFunction{TSelf, TPlan}"/> catches it, returns no gradients
/// for that step and reports it twice: at once through <see cref="BackwardFailed"/> (on the thread that ran the
/// backward), and as a <see cref="SlothBackwardException"/> thrown by the next SlothSharp call on the thread that ran
/// the failed function's forward (or by <see cref="ThrowIfBackwardFailed"/>), so a failure is never silent.
/// </summary>
public static class SlothAutograd
{
    /// <summary>Raised on the engine thread that ran the failed backward. Handlers must be quick and thread-safe;
    /// an exception thrown by a handler is ignored (it cannot cross the native callback either).</summary>
    public static event EventHandler<BackwardFailedEventArgs>? BackwardFailed;

    /// <summary>Throws (and clears) the failure of a SlothSharp backward whose forward ran on the calling thread, if any.</summary>
    public static void ThrowIfBackwardFailed()
    {
        if (AutogradState.Current.TakeFailure() is { } e) throw e;
    }

    /// <summary>The start of every SlothSharp autograd call: release the gradient wrappers this thread returned earlier
    /// (safe: see <see cref="AutogradState"/>), then rethrow a pending backward failure.</summary>
    internal static void Enter()
    {
        var state = AutogradState.Current;
        state.ReleaseReturned();
        if (state.TakeFailure() is { } e) throw e;
        if (_backwardDepth == 0) EngineThreadRelease.ReleaseOtherThreads(state);
    }

    /// <summary>How many SlothSharp backwards this thread is inside (a forward may run in one: recomputation).</summary>
    [ThreadStatic] private static int _backwardDepth;

    /// <summary>Runs a backward body under the guard. The call record says how many gradients TorchSharp expects
    /// (one per apply() argument); on failure all of them are null. The returned wrappers are held for release.</summary>
    internal static List<Tensor> GuardedBackward(string function, CallRecord? call, Func<Tensor?[]> body)
    {
        var slots = call?.Slots ?? 0;
        Tensor?[] grads;
        _backwardDepth++;
        try
        {
            if (call is null) throw new InvalidOperationException("the autograd context has no SlothSharp call record (forward did not run through SlothFunction)");
            AutogradState.Current.ReleaseReturned();
            grads = body();
            call.Check(function, grads);  // TorchSharp would throw inside the callback: that would end the process
            AutogradState.Current.HoldReturned(grads);
        }
        catch (Exception e)
        {
            Report(function, call, e);
            grads = [];
        }
        finally
        {
            _backwardDepth--;
        }
        var list = new List<Tensor>(Math.Max(slots, 1));
        foreach (var g in grads) list.Add(g!);
        while (list.Count < slots) list.Add(null!);
        return list;
    }

    private static void Report(string function, CallRecord? call, Exception e)
    {
        var wrapped = new SlothBackwardException(function, e);
        try
        {
            (call?.ForwardThread ?? AutogradState.Current).Fail(wrapped);
            BackwardFailed?.Invoke(null, new BackwardFailedEventArgs(function, e));
        }
        catch
        {
            // A failing handler must not take the process down with it.
        }
    }
}
