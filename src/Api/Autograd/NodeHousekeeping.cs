using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>
/// Frees what TorchSharp 0.107's custom-function machinery would otherwise keep alive. Measured on the H100 (round 2):
/// the fused decoder OOMed at 78 GB without checkpointing and took 84 GB on a 4-layer model, because
/// <list type="number">
/// <item>every backward receives its upstream gradient as a new managed wrapper that TorchSharp never disposes: on
/// CUDA the backward runs on the autograd engine's thread, where no dispose scope is open, so every gradient flowing
/// into a SlothSharp op (≈ 0.5 GB per decoder layer at the 1B shape) stayed allocated until the .NET GC ran;</item>
/// <item>the tensors saved with <c>save_for_backward</c> live in the managed context until the graph is destroyed,
/// not until the node's backward has run (PyTorch releases a node's saved tensors right after its backward), so
/// backward never gave activations back as it went;</item>
/// <item>for every output of a recorded call TorchSharp allocates an uninitialized tensor of the output's size
/// (<c>Node._outputCache</c>, used only to make zeros for an output whose gradient is undefined).</item>
/// </list>
/// (1) and (2) are released at the end of each backward; (3) is replaced by a zero-stride view of one element right
/// after the call (the zeros it may still make have the right shape, dtype and device).
/// </summary>
internal static class NodeHousekeeping
{
    private static readonly FieldInfo? NodeField =
        typeof(autograd.AutogradContext).GetField("_node", BindingFlags.NonPublic | BindingFlags.Instance);

    [ThreadStatic] private static autograd.AutogradContext? _lastForward;

    /// <summary>Disposes the wrappers a forward returned: TorchSharp hands the caller new wrappers of the same
    /// tensors and never disposes these (outside a dispose scope they kept the output alive until the GC ran). Not an
    /// input's own wrapper (a forward may return one), nor one of the wrappers the caller gets.</summary>
    public static void DisposeForwardOutputs(IEnumerable<Tensor> raw, IReadOnlyList<Tensor> returned, Tensor?[] inputs)
    {
        foreach (var t in raw)
        {
            if (t is null || t.IsInvalid) continue;
            if (returned.Any(r => ReferenceEquals(r, t)) || inputs.Any(i => ReferenceEquals(i, t))) continue;
            t.Dispose();
        }
    }

    /// <summary>Called by the base's forward: the context of the call in flight on this thread.</summary>
    public static void ForwardRan(autograd.AutogradContext ctx) => _lastForward = ctx;

    /// <summary>Takes the context the last forward on this thread recorded (null when none).</summary>
    public static autograd.AutogradContext? TakeLastForward()
    {
        var c = _lastForward;
        _lastForward = null;
        return c;
    }

    /// <summary>Whether a call with these inputs is recorded in the graph (TorchSharp's own rule: grad mode on and an
    /// input that requires grad). Forwards that are not recorded must not keep tensors for a backward that never
    /// comes (a <see cref="TensorBox"/> in save_data would live until the GC).</summary>
    public static bool IsRecorded(Tensor?[] inputs)
    {
        if (!is_grad_enabled()) return false;
        foreach (var t in inputs)
            if (t is not null && !t.IsInvalid && t.requires_grad) return true;
        return false;
    }

    private const string OutputsKey = "SlothSharp.outputs";

    // Looked up once per node type, not on every recorded call (this runs for every fused op in every step).
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, FieldInfo?> OutputCacheFields = new();

    private static FieldInfo? OutputCacheField(Type nodeType) =>
        OutputCacheFields.GetOrAdd(nodeType, t => t.GetField("_outputCache", BindingFlags.NonPublic | BindingFlags.Instance));

    /// <summary>Frees the output-sized tensors TorchSharp allocated for <paramref name="ctx"/>'s node and keeps the
    /// outputs' shape, dtype and device instead, from which <see cref="Materialize"/> makes the zeros that TorchSharp
    /// would have made for an output whose gradient is undefined (best effort: does nothing if TorchSharp's internals
    /// differ, and then TorchSharp's own cache stays).</summary>
    public static void TrimOutputCache(autograd.AutogradContext? ctx)
    {
        if (ctx is null || NodeField?.GetValue(ctx) is not { } node) return;
        if (OutputCacheField(node.GetType())?.GetValue(node) is not List<Tensor> cache) return;
        var outputs = new OutputInfo?[cache.Count];
        for (var i = 0; i < cache.Count; i++)
        {
            var t = cache[i];
            if (t is null || t.IsInvalid) continue;
            outputs[i] = new OutputInfo(t.shape, t.dtype, t.device_type, t.device_index);
            cache[i] = null!;  // TorchSharp then passes an undefined gradient through instead of making zeros
            t.Dispose();
        }
        ctx.save_data(OutputsKey, outputs);
    }

    /// <summary>The upstream gradient of output <paramref name="index"/>: zeros where it is undefined (the output was
    /// not used), as TorchSharp would have materialized it; <paramref name="made"/> is true for such a new tensor.</summary>
    public static Tensor Materialize(autograd.AutogradContext ctx, Tensor? grad, int index, out bool made)
    {
        made = false;
        if (grad is not null && !grad.IsInvalid) return grad;
        if (ctx.get_data(OutputsKey) is not OutputInfo?[] outputs || index >= outputs.Length || outputs[index] is not { } o)
            throw new InvalidOperationException($"the upstream gradient of output {index} is undefined and its shape is unknown");
        made = true;
        return zeros(o.Shape, o.Dtype, new Device(o.DeviceType, o.DeviceIndex));
    }

    private sealed record OutputInfo(long[] Shape, ScalarType Dtype, TorchSharp.DeviceType DeviceType, int DeviceIndex);

    /// <summary>After a backward: disposes the upstream-gradient wrappers TorchSharp made for it (unless one of them is
    /// being returned) and releases the node's saved tensors, as PyTorch does after a node's backward. A second
    /// backward through the same graph (retain_graph) then fails with a reported error instead of reading freed data.</summary>
    public static void AfterBackward(autograd.AutogradContext ctx, IReadOnlyList<Tensor?> gradOutputs, IReadOnlyList<Tensor?> returned)
    {
        foreach (var g in gradOutputs)
        {
            if (g is null || g.IsInvalid) continue;
            var isReturned = false;
            foreach (var r in returned)
                if (ReferenceEquals(r, g)) { isReturned = true; break; }
            if (!isReturned) g.Dispose();
        }
        ctx.Dispose();
    }
}
