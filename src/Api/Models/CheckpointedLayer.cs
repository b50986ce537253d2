using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>
/// Gradient checkpointing of one decoder layer: forward runs without recording a graph and keeps only the layer's
/// input; backward runs the layer again with autograd on and differentiates that. TorchSharp has no checkpoint utility,
/// so this is a custom autograd function. The layer's trainable parameters (LoRA adapters) are passed as inputs too:
/// that makes the output require grad even when the input does not (layer 0 under a frozen embedding), and lets
/// backward return their gradients through the engine. LoRA dropout draws from a per-call seed, so the recomputation
/// sees the same masks.
/// </summary>
internal sealed class CheckpointedLayerFunction : autograd.SingleTensorFunction<CheckpointedLayerFunction>
{
    private static Exception? _pending;

    public override string Name => "SlothSharp.CheckpointedDecoderLayer";

    /// <summary>Runs <paramref name="layer"/> checkpointed (no KV cache). With <paramref name="recompute"/> (the first
    /// layer, whose input is the embedding output of a frozen embedding: x needs no gradient) the input is not kept:
    /// backward embeds the kept token ids again (the same bits), so the step holds 8 bytes a token instead of
    /// 2 × hidden (64 MB for a Mistral-7B step of 8 × 1024 tokens) from the forward to the end of backward. The caller
    /// may then dispose <paramref name="x"/> once this returns.</summary>
    public static Tensor Run(DecoderLayer layer, Tensor x, LayerContext ctx, ulong? seed, RecomputableInput? recompute = null)
    {
        ThrowIfFailed();
        var trainable = layer.parameters().Where(p => p.requires_grad).Cast<Tensor>().ToArray();
        if (ctx.Cache is not null) throw new ArgumentException("a KV cache is for inference; checkpointing is for training", nameof(ctx));
        if (recompute is not null && x.requires_grad)
            throw new ArgumentException("an input that needs a gradient cannot be made again from token ids", nameof(recompute));
        var call = new Call(layer, ctx, seed, trainable.Length, x.requires_grad, recompute);
        return apply([x, .. trainable, call]);
    }

    /// <summary>Rethrows an exception that a checkpointed backward caught (it cannot cross the native engine).</summary>
    public static void ThrowIfFailed()
    {
        var e = Interlocked.Exchange(ref _pending, null);
        if (e is not null)
            throw new InvalidOperationException($"a checkpointed decoder layer's backward failed, so that step's gradients are missing: {e.Message}", e);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var call = (Call)vars[^1];
        Tensor y;
        using (no_grad()) y = call.Layer.Forward(x, call.Context, call.Seed);
        // Saved in the graph (not on the managed side), so they live exactly as long as the graph needs them: the input,
        // or the token ids it is made from.
        ctx.save_for_backward([call.Recompute?.Ids ?? x, .. call.Context.Tensors()]);
        ctx.save_data("call", call);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var call = (Call)ctx.get_data("call");
        var result = new List<Tensor>(call.Trainable + 2);
        var state = Autograd.AutogradState.Current;
        try
        {
            // The gradients this thread returned earlier (the previous layer's) were copied by the engine already.
            state.ReleaseReturned();
            var saved = ctx.get_saved_variables();
            using var scope = NewDisposeScope();
            using var grad = enable_grad();
            Tensor x;
            if (call.Recompute is { } r)
                using (no_grad()) x = r.Embed(saved[0]);
            else x = saved[0].detach().requires_grad_(call.NeedInputGrad);
            var layerContext = call.Context.WithTensors(saved.Skip(1).ToList());
            // Held across the recomputation AND its backward: the fused NF4 nodes dequantize their weight again in
            // backward, so a sharded layer's gathered weights must stay until the gradients exist (nested calls share
            // one gather).
            using var around = call.Layer.AroundCompute?.Invoke();
            var y = call.Layer.Forward(x, layerContext, call.Seed);
            var trainable = call.Layer.parameters().Where(p => p.requires_grad).Cast<Tensor>().ToList();
            var wrt = call.NeedInputGrad ? trainable.Prepend(x).ToList() : trainable;
            var grads = autograd.grad([y], wrt, [gradOutput], allow_unused: true);
            var k = 0;
            result.Add(call.NeedInputGrad ? Keep(grads[k++]) : null!);
            for (var i = 0; i < trainable.Count; i++) result.Add(Keep(grads[k++]));
            foreach (var v in saved) v.Dispose();
            // Released at this thread's next SlothSharp call, once the engine has copied them (without this the
            // wrappers, made outside any dispose scope on the engine thread, kept dX alive until the GC ran).
            state.HoldReturned(result);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _pending, e, null);
            foreach (var g in result) g?.Dispose();
            result.Clear();
            for (var i = 0; i < call.Trainable + 1; i++) result.Add(null!);
        }
        finally
        {
            // The upstream gradient's wrapper (TorchSharp's, never disposed by it) and the saved layer input.
            Autograd.NodeHousekeeping.AfterBackward(ctx, [gradOutput], result);
        }
        result.Add(null!);  // the Call object's slot
        return result;
    }

    private static Tensor Keep(Tensor? g) => g is null || g.IsInvalid ? null! : g.MoveToOuterDisposeScope();

    private sealed record Call(DecoderLayer Layer, LayerContext Context, ulong? Seed, int Trainable, bool NeedInputGrad,
                               RecomputableInput? Recompute);
}

/// <summary>A checkpointed layer's input made again from kept token ids (<see cref="CheckpointedLayerFunction.Run"/>):
/// <paramref name="Ids"/> [B, T] int64 and <paramref name="Embed"/>, which must give the forward's input bit for bit.</summary>
internal sealed record RecomputableInput(Tensor Ids, Func<Tensor, Tensor> Embed);
