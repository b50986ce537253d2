using NUnit.Framework;
using SlothSharp.Distributed;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>CausalLM.RecomputeAttention and RecomputeNorms with a sharded model (ranks as threads on the CPU, the tiny
/// golden Llama): chosen before sharding, the sharded kernels use them (the same step bit for bit); while sharded, they
/// cannot be changed (that would replace the sharded kernels with the one-device ones); after unsharding, they can.</summary>
public class ShardedRecomputeTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromMinutes(5);

    [Test]
    public void TheOptionsCannotChangeWhileShardedAndAreTakenFromBefore()
    {
        using var model = FsdpTests.LoadWithAdapter(null, checkpointing: true);
        model.RecomputeNorms = true;
        var seen = InProcessCommunicator.Run(1, c =>
        {
            using var sharded = new ShardedCausalLM(model, c);
            var refused = new List<string>();
            try { model.RecomputeNorms = false; }
            catch (InvalidOperationException) { refused.Add(nameof(model.RecomputeNorms)); }
            try { model.RecomputeAttention = true; }
            catch (InvalidOperationException) { refused.Add(nameof(model.RecomputeAttention)); }
            // A recorded forward's input norm comes with its recipe: the sharded kernels took the option.
            using var scope = NewDisposeScope();
            var layer = model.Model.Layers[0];
            var h = randn([1, 3, model.Config.HiddenSize]).requires_grad_();
            var recipe = layer.InputNorm.ForProjections(h).Recipe is not null;
            return (refused, recipe, sharded: layer.InputNorm.Kernels is ShardedKernels, model.RecomputeNorms, model.RecomputeAttention);
        }, Wait)[0];
        Assert.That(seen.sharded, Is.True, "the sharded kernels were installed");
        Assert.That(seen.refused, Is.EqualTo(new[] { nameof(model.RecomputeNorms), nameof(model.RecomputeAttention) }));
        Assert.That((seen.RecomputeNorms, seen.RecomputeAttention), Is.EqualTo((true, false)), "a refused change changes nothing");
        Assert.That(seen.recipe, Is.True, "RecomputeNorms set before sharding reaches the sharded kernels");
        // Unsharded (disposed): the one-device kernels are back and the options can change again.
        Assert.That(model.Model.Layers[0].InputNorm.Kernels, Is.SameAs(DecoderKernels.FusedWith(false, true)));
        model.RecomputeNorms = false;
        model.RecomputeAttention = true;
        Assert.That(model.Model.Layers[0].InputNorm.Kernels, Is.SameAs(DecoderKernels.FusedWith(true, false)));
    }

    /// <summary>Two ranks, checkpointed layers (the sharded fused path): the step with both recomputations chosen
    /// before sharding equals the step without them bit for bit.</summary>
    [Test]
    public void ShardedStepWithRecomputationsGivesTheSameBits()
    {
        var batch = FsdpTests.MakeBatch();
        (double Loss, Dictionary<string, Tensor> Grads)[] Run(bool recompute)
        {
            var models = Enumerable.Range(0, 2).Select(_ => FsdpTests.LoadWithAdapter(null, checkpointing: true)).ToArray();
            try
            {
                foreach (var m in models) (m.RecomputeAttention, m.RecomputeNorms) = (recompute, recompute);
                return InProcessCommunicator.Run(2, c =>
                {
                    var model = models[c.Rank];
                    using var sharded = new ShardedCausalLM(model, c);
                    var result = new FsdpStep(sharded).Run(batch.Ids, batch.Mask, batch.Labels);
                    return (result.Loss, model.LoraParameters().ToDictionary(kv => kv.Key, kv => kv.Value.grad!.detach().clone()));
                }, Wait);
            }
            finally
            {
                foreach (var m in models) m.Dispose();
            }
        }
        var kept = Run(false);
        var recomputed = Run(true);
        for (var r = 0; r < 2; r++)
        {
            Assert.That(recomputed[r].Loss, Is.EqualTo(kept[r].Loss), $"rank {r} loss");
            foreach (var (name, g) in kept[r].Grads)
                Assert.That(TestEnv.BitEqual(recomputed[r].Grads[name], g), Is.True, $"rank {r} {name}");
        }
    }
}
