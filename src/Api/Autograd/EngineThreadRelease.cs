using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>
/// Lets the autograd engine's CUDA device thread release what it holds, from the thread that starts a new SlothSharp
/// call. CUDA backwards run on the engine's thread for their device, never on the thread that calls forward, so without
/// this the gradients a backward returned (dW for an LM head: ~1 GB at a 128K vocabulary) would stay alive through the
/// whole next forward. Only the owning thread may release them (see <see cref="AutogradState"/>), so this runs a
/// one-element backward on that device: its callback runs on the device thread, which then releases its own earlier
/// gradients, every one of them already copied by the engine. Best effort: a failure here only delays the release.
/// </summary>
internal static class EngineThreadRelease
{
    [ThreadStatic] private static bool _running;

    /// <summary>Called at the start of a SlothSharp call (not from inside a backward).</summary>
    public static void ReleaseOtherThreads(AutogradState caller)
    {
        if (_running) return;
        if (AutogradState.CudaDevicesHeldByOthers(caller) is not { } devices) return;
        _running = true;
        try
        {
            foreach (var d in devices) RunOn(d);
        }
        catch
        {
            // Best effort: the device thread still releases at its own next SlothSharp backward.
        }
        finally
        {
            _running = false;
        }
    }

    private static void RunOn(int device)
    {
        if (is_inference_mode_enabled()) return;
        using var scope = NewDisposeScope();
        using var grad = enable_grad();
        var x = zeros(1, device: new Device(DeviceType.CUDA, device)).requires_grad_();
        // TorchSharp's apply, not Apply: the caller's Enter has just run, and a nested one must not take (and so lose)
        // a backward failure that is meant for the caller.
        ReleaseFunction.apply(FunctionArguments.Pack(ReleasePlan.Instance, [x])).sum().backward();
    }

    private sealed record ReleasePlan
    {
        public static readonly ReleasePlan Instance = new();
    }

    /// <summary>Identity forward; its backward's only work is the release the base does on entry.</summary>
    private sealed class ReleaseFunction : SlothFunction<ReleaseFunction, ReleasePlan>
    {
        public override string Name => "SlothSharp.EngineThreadRelease";

        protected override Tensor Forward(autograd.AutogradContext ctx, ReleasePlan plan, Tensor?[] inputs) => inputs[0]!.clone();

        protected override Tensor?[] Backward(autograd.AutogradContext ctx, ReleasePlan plan, Tensor gradOutput) => [null];
    }
}
