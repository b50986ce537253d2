using NUnit.Framework;
using SlothSharp.Distributed;
using SlothSharp.Losses;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// FSDP-style sharding proven on the CPU with ranks as threads (<see cref="InProcessCommunicator"/>) on the tiny golden
/// Llama (NF4, float32 compute, the golden LoRA adapter): the all-gathered weights are the unsharded bytes, the full
/// weights hold no memory between uses, and an N-rank step gives the 1-rank step's loss and adapter gradients.
/// </summary>
public class FsdpTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromMinutes(5);

    internal sealed record Batch(Tensor Ids, Tensor Mask, Tensor Labels);

    /// <summary>Six right-padded rows of different lengths (pad id 2, labels −100 there): ranks get uneven token counts.</summary>
    internal static Batch MakeBatch(Device? device = null)
    {
        long[] lengths = [20, 17, 12, 20, 9, 15];
        const long t = 20;
        using var g = new Generator(7);
        var ids = randint(3, 420, [lengths.Length, t], ScalarType.Int64, generator: g);
        var mask = arange(t).unsqueeze(0).lt(tensor(lengths).unsqueeze(1));
        ids = where(mask, ids, tensor(2L));
        var labels = where(mask, ids, tensor(-100L));
        var d = device ?? CPU;
        return new Batch(ids.to(d), mask.to(ScalarType.Int64).to(d), labels.to(d));
    }

    internal static CausalLM LoadWithAdapter(Device? device, bool checkpointing)
    {
        var model = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = device, ComputeDtype = ScalarType.Float32 });
        LlamaGolden.LoadGoldenAdapter(model);
        model.GradientCheckpointing = checkpointing;
        return model;
    }

    /// <summary>The plain one-process step on the whole batch: mean over all targets, then backward.</summary>
    internal static (double Loss, Dictionary<string, Tensor> Grads) Reference(CausalLM model, Batch b)
    {
        model.train();
        var t = b.Ids.shape[1];
        var hidden = model.Forward(b.Ids, b.Mask);
        var y = b.Labels.narrow(1, 1, t - 1);
        var targets = y.ne(-100).sum().item<long>();
        var loss = FusedLinearCrossEntropy.Apply(hidden.narrow(1, 0, t - 1), model.LmHeadWeight, null, y,
            new CrossEntropyOptions { Normalizer = targets });
        loss.backward();
        return (loss.item<float>(), Grads(model));
    }

    private static Dictionary<string, Tensor> Grads(CausalLM model) =>
        model.LoraParameters().ToDictionary(kv => kv.Key, kv => kv.Value.grad!.detach().cpu().clone());

    private static IEnumerable<(string Name, Projection Linear)> Projections(CausalLM model) =>
        model.Model.Layers.SelectMany((l, i) => l.Projections.Select(p => ($"model.layers.{i}.{p.GetName()}", p)));

    /// <summary>Every tensor object viewing a projection's packed bytes or absmax codes (the Nf4Weight's own and the
    /// buffers of Projection and Linear4bit) with its element count.</summary>
    private static IEnumerable<(string What, long Numel)> FullWeightViews(CausalLM model)
    {
        foreach (var (name, p) in Projections(model))
        {
            yield return ($"{name} packed", p.Nf4!.Packed.numel());
            yield return ($"{name} absmax", p.Nf4.AbsmaxCodes.numel());
            foreach (var (owner, m) in new (string, nn.Module)[] { ("Projection", p), ("Linear4bit", p.Nf4Layer!) })
                foreach (var (key, t) in m.named_buffers(recurse: false))
                    if (key is "weight" or "weight.absmax") yield return ($"{name} {owner} buffer {key}", t.numel());
        }
    }

    [TestCase(1, true)]
    [TestCase(2, true)]
    [TestCase(3, true)]
    [TestCase(2, false)]
    [TestCase(3, false)]
    public void ShardedStepEqualsTheOneRankStep(int ranks, bool checkpointing)
    {
        var batch = MakeBatch();
        using var reference = LoadWithAdapter(null, checkpointing);
        var (refLoss, refGrads) = Reference(reference, batch);
        var models = Enumerable.Range(0, ranks).Select(_ => LoadWithAdapter(null, checkpointing)).ToArray();
        try
        {
            var results = InProcessCommunicator.Run(ranks, c =>
            {
                var model = models[c.Rank];
                using var sharded = new ShardedCausalLM(model, c);
                sharded.BroadcastAdapters();
                var result = new FsdpStep(sharded).Run(batch.Ids, batch.Mask, batch.Labels);
                var freedAfter = FullWeightViews(model).All(v => v.Numel == 0);
                return (result, Grads(model), freedAfter);
            }, Wait);
            var totalTargets = batch.Labels.narrow(1, 1, batch.Labels.shape[1] - 1).ne(-100).sum().item<long>();
            Assert.That(results.Sum(r => r.result.LocalTargets), Is.EqualTo(totalTargets));
            Assert.That(results.Sum(r => r.result.LocalRows), Is.EqualTo(batch.Ids.shape[0]));
            for (var r = 0; r < ranks; r++)
            {
                var (result, grads, freed) = results[r];
                Assert.That(result.GlobalTargets, Is.EqualTo(totalTargets));
                Assert.That(result.Loss, Is.EqualTo(refLoss).Within(1e-5), $"rank {r} loss");
                Assert.That(freed, Is.True, $"rank {r}: full weights still held after the step");
                double worst = 0;
                foreach (var (name, g) in grads)
                {
                    var maxAbs = LlamaGolden.MaxAbs(g, refGrads[name]);
                    worst = Math.Max(worst, maxAbs);
                    Assert.That(maxAbs, Is.LessThanOrEqualTo(1e-5), $"rank {r} {name}");
                    Assert.That(TestEnv.RelativeError(g, refGrads[name]), Is.LessThanOrEqualTo(1e-5), $"rank {r} {name}");
                    // The all-reduce hands every rank the same bits.
                    Assert.That(TestEnv.BitEqual(g, results[0].Item2[name]), Is.True, $"rank {r} {name} differs from rank 0");
                }
                if (r == 0) TestContext.Out.WriteLine($"{ranks} ranks: loss {result.Loss:R} vs {refLoss:R}; worst gradient difference {worst:E2}");
            }
            Assert.That(refGrads.Values.All(g => g.abs().max().item<float>() > 0), Is.True, "every reference gradient is non-zero");
        }
        finally
        {
            foreach (var m in models) m.Dispose();
        }
    }

    [Test]
    public void ThreeAdamWStepsOnTwoRanksFollowTheOneRankRunAndKeepTheReplicasEqual()
    {
        const int steps = 3;
        var batch = MakeBatch();
        List<double> refLosses = [];
        Dictionary<string, Tensor> refAdapters;
        using (var reference = LoadWithAdapter(null, checkpointing: true))
        {
            using var opt = optim.AdamW(reference.LoraParameters().Select(p => p.Value), 1e-2);
            for (var s = 0; s < steps; s++)
            {
                opt.zero_grad();
                refLosses.Add(Reference(reference, batch).Loss);
                opt.step();
            }
            refAdapters = reference.LoraParameters().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        }
        var models = Enumerable.Range(0, 2).Select(_ => LoadWithAdapter(null, checkpointing: true)).ToArray();
        try
        {
            var runs = InProcessCommunicator.Run(2, c =>
            {
                var model = models[c.Rank];
                using var sharded = new ShardedCausalLM(model, c);
                var step = new FsdpStep(sharded);
                using var opt = optim.AdamW(model.LoraParameters().Select(p => p.Value), 1e-2);
                var losses = new List<double>();
                for (var s = 0; s < steps; s++)
                {
                    opt.zero_grad();
                    losses.Add(step.Run(batch.Ids, batch.Mask, batch.Labels).Loss);
                    opt.step();
                }
                return (losses, model.LoraParameters().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone()));
            }, Wait);
            for (var s = 0; s < steps; s++)
                Assert.That(runs[0].losses[s], Is.EqualTo(refLosses[s]).Within(1e-5), $"step {s}");
            Assert.That(refLosses[^1], Is.LessThan(refLosses[0]), "the loss goes down");
            foreach (var (name, a) in runs[0].Item2)
            {
                Assert.That(TestEnv.BitEqual(a, runs[1].Item2[name]), Is.True, $"{name}: the replicas differ");
                Assert.That(LlamaGolden.MaxAbs(a, refAdapters[name]), Is.LessThanOrEqualTo(1e-5), name);
            }
        }
        finally
        {
            foreach (var m in models) m.Dispose();
        }
    }

    [TestCase(2)]
    [TestCase(3)]
    public void GatheredWeightsAreTheUnshardedBytesAndAreFreedBetweenUses(int ranks)
    {
        using var reference = LoadWithAdapter(null, checkpointing: false);
        var refState = reference.state_dict();
        var batch = MakeBatch();
        Tensor refHidden;
        using (no_grad()) refHidden = reference.Forward(batch.Ids, batch.Mask);
        var models = Enumerable.Range(0, ranks).Select(_ => LoadWithAdapter(null, checkpointing: false)).ToArray();
        try
        {
            var reports = InProcessCommunicator.Run(ranks, c =>
            {
                var model = models[c.Rank];
                var problems = new List<string>();
                using var sharded = new ShardedCausalLM(model, c);
                problems.AddRange(FullWeightViews(model).Where(v => v.Numel != 0).Select(v => $"before use: {v.What} holds {v.Numel}"));
                if (Enumerable.Range(0, sharded.NumLayers).Any(sharded.IsGathered)) problems.Add("a layer reports gathered before use");
                using (sharded.GatherAll())
                {
                    foreach (var (key, t) in model.state_dict())
                        if (!TestEnv.BitEqual(t, refState[key])) problems.Add($"gathered {key} differs from the unsharded model");
                    foreach (var (name, p) in Projections(model))
                    {
                        using var w = p.DenseWeight(ScalarType.Float32);
                        using var rw = Projections(reference).First(x => x.Name == name).Linear.DenseWeight(ScalarType.Float32);
                        if (!TestEnv.BitEqual(w, rw)) problems.Add($"{name}: dequantized weight differs");
                    }
                    // A nested gather (the layer hook inside GatherAll) must not free what the outer scope holds.
                    using (no_grad()) model.Forward(batch.Ids, batch.Mask).Dispose();
                    if (!Enumerable.Range(0, sharded.NumLayers).All(sharded.IsGathered)) problems.Add("a nested gather freed an outer one");
                }
                problems.AddRange(FullWeightViews(model).Where(v => v.Numel != 0).Select(v => $"after GatherAll: {v.What} holds {v.Numel}"));
                Tensor hidden;
                using (no_grad()) hidden = model.Forward(batch.Ids, batch.Mask);
                problems.AddRange(FullWeightViews(model).Where(v => v.Numel != 0).Select(v => $"after a forward: {v.What} holds {v.Numel}"));
                return (problems, hidden, sharded.ShardBytes, sharded.FullBytes);
            }, Wait);
            foreach (var (problems, hidden, shard, full) in reports)
            {
                Assert.That(problems, Is.Empty);
                TestEnv.AssertClose(hidden, refHidden, 1e-6, "sharded forward");
                // 1/N of the bytes, plus at most one padded block per projection.
                Assert.That(shard * ranks, Is.GreaterThanOrEqualTo(full));
                Assert.That(shard, Is.LessThanOrEqualTo(full / ranks + 14 * (32 + 1)));
            }
            TestContext.Out.WriteLine($"{ranks} ranks: {reports[0].ShardBytes} of {reports[0].FullBytes} NF4 bytes per rank");
        }
        finally
        {
            foreach (var m in models) m.Dispose();
        }
    }

    [Test]
    public void ShardingAWeightWithFewerBlocksThanRanksAndAPartialLastBlock()
    {
        // 3 x 50 = 150 values: blocks of 64 → 3 blocks, the last one partial (22 values), 75 packed bytes; 4 ranks.
        using var g = new Generator(3);
        var dense = randn([3, 50], generator: g);
        using var expected = Nf4Weight.Quantize(dense);
        var layout = new Nf4BlockShard(150, 64, 4);
        Assert.That((layout.Blocks, layout.BlocksPerRank, layout.PackedLength), Is.EqualTo((3L, 1L, 75L)));
        Assert.That(layout.PackedRange(2), Is.EqualTo((64L, 11L)));
        Assert.That(layout.Owned(3), Is.EqualTo((3L, 0L)));
        Assert.That(layout.PackedRange(3), Is.EqualTo((75L, 0L)));
        var bytes = InProcessCommunicator.Run(4, c =>
        {
            using var linear = Projection.Quantized("q_proj", Nf4Weight.Quantize(dense), null);
            using var sharded = new ShardedNf4Weight("q_proj", linear, c.Rank, c.Size);
            var freed = linear.Nf4!.Packed.numel() == 0 && linear.Nf4.AbsmaxCodes.numel() == 0;
            sharded.Gather(c);
            var packed = linear.Nf4.Packed.clone();
            var codes = linear.Nf4.AbsmaxCodes.clone();
            var y = linear.forward(ones(2, 50));
            sharded.Free();
            return (freed, packed, codes, y);
        }, Wait);
        using var y0 = nn.functional.linear(ones(2, 50), expected.Dequantize(ScalarType.Float32));
        foreach (var (freed, packed, codes, y) in bytes)
        {
            Assert.That(freed, Is.True);
            Assert.That(TestEnv.BitEqual(packed, expected.Packed), Is.True);
            Assert.That(TestEnv.BitEqual(codes, expected.AbsmaxCodes), Is.True);
            Assert.That(TestEnv.BitEqual(y, y0), Is.True);
        }
    }

    [Test]
    public void ClearErrors()
    {
        using var dense = CausalLM.FromPretrained(LlamaGolden.DenseDir, new LoadOptions { Quantize = false, ComputeDtype = ScalarType.Float32 });
        var comms = InProcessCommunicator.CreateGroup(1);
        var e = Assert.Throws<ArgumentException>(() => new ShardedCausalLM(dense, comms[0]));
        Assert.That(e!.Message, Does.Contain("Quantize = true"));
        comms[0].Dispose();

        // Two rows cannot feed three ranks: every rank refuses before any collective, nobody hangs.
        var batch = MakeBatch();
        var models = Enumerable.Range(0, 3).Select(_ => LoadWithAdapter(null, checkpointing: true)).ToArray();
        try
        {
            var small = Assert.Throws<ArgumentException>(() => InProcessCommunicator.Run(3, c =>
            {
                using var sharded = new ShardedCausalLM(models[c.Rank], c);
                new FsdpStep(sharded).Run(batch.Ids.narrow(0, 0, 2), batch.Mask.narrow(0, 0, 2), batch.Labels.narrow(0, 0, 2));
            }, Wait));
            Assert.That(small!.Message, Does.Contain("2 rows; 3 ranks"));
            // models[0] was sharded above and released without Unshard: its decoder weights are gone, and it says so.
            var gone = Assert.Throws<InvalidOperationException>(() => InProcessCommunicator.Run(1, c => new ShardedCausalLM(models[0], c).Dispose(), Wait));
            Assert.That(gone!.Message, Does.Contain("without Unshard"));
            using var fresh = LoadWithAdapter(null, checkpointing: true);
            var twice = Assert.Throws<InvalidOperationException>(() => InProcessCommunicator.Run(1, c =>
            {
                using var a = new ShardedCausalLM(fresh, c);
                using var b = new ShardedCausalLM(fresh, c);
            }, Wait));
            Assert.That(twice!.Message, Does.Contain("sharded already"));
            // Unshard gives the model back whole: it can be sharded again.
            using var whole = LoadWithAdapter(null, checkpointing: true);
            InProcessCommunicator.Run(1, c =>
            {
                var a = new ShardedCausalLM(whole, c);
                a.Unshard();
                Assert.That(FullWeightViews(whole).All(v => v.Numel > 0), Is.True);
                using var b = new ShardedCausalLM(whole, c);
            }, Wait);
        }
        finally
        {
            foreach (var m in models) m.Dispose();
        }
    }

    /// <summary>The sharded step over <paramref name="comm"/> (one rank) on <paramref name="device"/> against the plain
    /// model there (used by the NCCL GPU test). Returns both losses; asserts the gradients.</summary>
    internal static (double Loss, double Reference) OneRankOnDevice(ICommunicator comm, Device device)
    {
        var batch = MakeBatch(device);
        using var reference = LoadWithAdapter(device, checkpointing: true);
        var (refLoss, refGrads) = Reference(reference, batch);
        using var model = LoadWithAdapter(device, checkpointing: true);
        using var sharded = new ShardedCausalLM(model, comm);
        var result = new FsdpStep(sharded).Run(batch.Ids, batch.Mask, batch.Labels);
        foreach (var (name, g) in Grads(model))
            Assert.That(TestEnv.RelativeError(g, refGrads[name]), Is.LessThanOrEqualTo(1e-4), name);
        Assert.That(FullWeightViews(model).All(v => v.Numel == 0), Is.True, "full weights freed after the step");
        return (result.Loss, refLoss);
    }
}
