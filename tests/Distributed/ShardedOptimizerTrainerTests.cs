using NUnit.Framework;
using SlothSharp.Cli;
using SlothSharp.Distributed;
using SlothSharp.Models;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// The <see cref="Trainer"/> with <see cref="ShardedAdamW"/> (<see cref="TrainerOptions.ShardOptimizer"/>) on the CPU,
/// ranks as threads: N ranks with local gradients reduce-scattered and 1/N of AdamW's state each take the 1-rank
/// (unsharded <see cref="Optim.FusedAdamW"/>) run's steps within 1e-5; a checkpoint written sharded has the unsharded
/// optimizer file and resumes with another rank count, sharded or not, onto the uninterrupted losses.
/// </summary>
public class ShardedOptimizerTrainerTests() : TempDirFixture("llama")
{
    private static readonly TimeSpan Wait = TimeSpan.FromMinutes(5);

    private static (List<double> Losses, Dictionary<string, Tensor> Adapters) Reference(TrainerOptions options, bool unfused = false)
    {
        using var model = LlamaGolden.LoadBase();
        // ShardedCausalLM runs the unfused NF4 + LoRA path: so does the reference of a sharded base.
        if (unfused) model.UseFusedKernels = false;
        using var trainer = new Trainer(model, DistributedTrainerTests.Data(), options);
        Assert.That(trainer.ShardedOptimizer, Is.Null, "one process: the unsharded optimizer by default");
        var losses = trainer.Train().Losses.ToList();
        return (losses, DistributedTrainerTests.Adapters(model));
    }

    private static void AssertClose(IReadOnlyList<double> losses, IReadOnlyList<double> reference, string what)
    {
        Assert.That(losses, Has.Count.EqualTo(reference.Count), what);
        for (var s = 0; s < losses.Count; s++)
            Assert.That(losses[s], Is.EqualTo(reference[s]).Within(1e-5 * Math.Max(1, Math.Abs(reference[s]))), $"{what}: step {s + 1} loss");
    }

    [TestCase(1, null, false)]   // one rank, forced on (ShardOptimizer true)
    [TestCase(2, null, false)]   // the default with N > 1
    [TestCase(3, null, false)]
    [TestCase(3, null, true)]    // moments in host memory
    [TestCase(2, false, false)]  // replicated AdamW, gradients all-reduced (the phase-1 path)
    [TestCase(3, true, true)]    // sharded base too
    public void NRanksWithTheShardedOptimizerEqualTheOneRankRun(int ranks, bool? shardBase, bool offload)
    {
        var options = DistributedTrainerTests.Options(null) with { MaxSteps = 5 };
        var (refLosses, refAdapters) = Reference(options, unfused: shardBase == true);
        var shardOptimizer = shardBase != false;
        var results = InProcessCommunicator.Run(ranks, c =>
        {
            var o = options with { ShardOptimizer = ranks == 1 || shardBase == false ? shardOptimizer : null, OffloadOptimizerState = offload };
            using var model = LlamaGolden.LoadBase();
            model.AddLora(o.Lora, o.Seed);
            using var sharded = shardBase == true ? new ShardedCausalLM(model, c) : null;
            using var trainer = new Trainer(model, DistributedTrainerTests.Data(), o, c);
            var sharding = trainer.ShardedOptimizer is { } s ? (s.ChunkElements, s.OffloadState, s.StateBytes) : default((long, bool, long)?);
            var losses = trainer.Train().Losses.ToList();
            return (losses, Adapters: DistributedTrainerTests.Adapters(model), sharding);
        }, Wait);
        for (var r = 0; r < ranks; r++)
        {
            var (losses, adapters, sharding) = results[r];
            AssertClose(losses, refLosses, $"rank {r}");
            foreach (var (name, p) in adapters)
            {
                Assert.That(LlamaGolden.MaxAbs(p, refAdapters[name]), Is.LessThanOrEqualTo(1e-5), $"rank {r} {name}");
                Assert.That(TestEnv.BitEqual(p, results[0].Adapters[name]), Is.True, $"rank {r} {name}: replicas differ");
            }
            if (!shardOptimizer)
            {
                Assert.That(sharding, Is.Null, "ShardOptimizer false: replicated AdamW");
                continue;
            }
            Assert.That(sharding, Is.Not.Null, "the sharded optimizer");
            var total = refAdapters.Values.Sum(t => t.numel());
            Assert.That(sharding!.Value.Item1, Is.EqualTo((total + ranks - 1) / ranks), "each rank's chunk is 1/N of the adapters");
            Assert.That(sharding.Value.Item2, Is.EqualTo(offload));
        }
    }

    [Test]
    public void ASaveWrittenShardedResumesWithOtherRankCounts()
    {
        var options = DistributedTrainerTests.Options(null) with { MaxSteps = 6, SaveEvery = 0 };
        var (reference, refAdapters) = Reference(options);
        // The 1-rank unsharded checkpoint after 3 steps, to compare the files.
        var plainDir = Path.Combine(Dir, "plain");
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, DistributedTrainerTests.Data(), options with { OutputDirectory = plainDir }))
        {
            for (var s = 0; s < 3; s++) trainer.TrainStep();
            trainer.SaveCheckpoint();
        }

        // 2 ranks, sharded optimizer: interrupted after step 3 (rank 1 sees the signal); the save gathers from both.
        var outDir = Path.Combine(Dir, "two");
        var interrupted = InProcessCommunicator.Run(2, c =>
        {
            using var model = LlamaGolden.LoadBase();
            using var trainer = new Trainer(model, DistributedTrainerTests.Data(), options with { OutputDirectory = outDir }, c);
            Assert.That(trainer.ShardedOptimizer, Is.Not.Null);
            using var cts = new CancellationTokenSource();
            var result = trainer.Train(new FinetuneProgress.SyncProgress<TrainProgress>(p => { if (c.Rank == 1 && p.Step == 3) cts.Cancel(); }), cts.Token);
            string? error = null;
            if (c.Rank == 0)
            {
                try
                {
                    trainer.SaveCheckpoint();
                }
                catch (InvalidOperationException e)
                {
                    error = e.Message;
                }
            }
            return (result, error);
        }, Wait);
        Assert.That(interrupted.Select(r => r.result.Steps), Is.EqualTo(new[] { 3, 3 }));
        Assert.That(interrupted[0].result.LastCheckpoint, Does.EndWith("step-000003"));
        Assert.That(interrupted[1].result.LastCheckpoint, Is.Null, "rank 1 writes nothing");
        Assert.That(interrupted[0].error, Does.Contain("call SaveCheckpointOnAllRanks on every rank"));

        // The optimizer file has the unsharded layout and the unsharded run's values.
        var shardedFile = Path.Combine(interrupted[0].result.LastCheckpoint!, TrainingCheckpoint.OptimizerFile);
        var plainFile = Path.Combine(TrainingCheckpoint.Resolve(plainDir), TrainingCheckpoint.OptimizerFile);
        using (var a = new SafetensorsReader(shardedFile))
        using (var b = new SafetensorsReader(plainFile))
        {
            Assert.That(a.Entries.Keys.Order(), Is.EqualTo(b.Entries.Keys.Order()), "same tensors");
            foreach (var key in b.Entries.Keys)
            {
                using var x = a.Read(key);
                using var y = b.Read(key);
                Assert.That(x.shape, Is.EqualTo(y.shape), key);
                if (key.EndsWith(".step", StringComparison.Ordinal)) Assert.That(x.to(ScalarType.Int64).flatten()[0].item<long>(), Is.EqualTo(3), key);
                else Assert.That(LlamaGolden.MaxAbs(x, y), Is.LessThanOrEqualTo(1e-6 + 1e-4 * y.abs().max().item<float>()), key);
            }
        }

        // Resumed with 3 ranks (sharded), with 1 rank sharded and offloaded, and by the plain unsharded trainer.
        foreach (var (ranks, shard, offload) in new[] { (3, (bool?)null, false), (1, (bool?)true, true), (1, (bool?)false, false) })
        {
            var copy = Path.Combine(Dir, $"resume-{ranks}-{shard}-{offload}");
            CopyDirectory(outDir, copy);
            var resumed = InProcessCommunicator.Run(ranks, c =>
            {
                using var model = LlamaGolden.LoadBase();
                using var trainer = new Trainer(model, DistributedTrainerTests.Data(),
                    options with { OutputDirectory = copy, ShardOptimizer = shard, OffloadOptimizerState = offload }, c);
                trainer.ResumeFrom(copy);
                var result = trainer.Train();
                return (result.Losses.ToList(), DistributedTrainerTests.Adapters(model));
            }, Wait);
            AssertClose(resumed[0].Item1, reference, $"resumed with {ranks} rank(s), shard {shard}, offload {offload}");
            foreach (var (name, p) in resumed[0].Item2)
                Assert.That(LlamaGolden.MaxAbs(p, refAdapters[name]), Is.LessThanOrEqualTo(1e-5), $"resumed with {ranks}: {name}");
        }
    }

    [Test]
    public void OffloadWithoutTheShardedOptimizerIsRejected()
    {
        using var model = LlamaGolden.LoadBase();
        var e = Assert.Throws<ArgumentException>(() =>
            new Trainer(model, DistributedTrainerTests.Data(), DistributedTrainerTests.Options(null) with { ShardOptimizer = false, OffloadOptimizerState = true }));
        Assert.That(e!.Message, Does.Contain("OffloadOptimizerState needs the sharded optimizer"));
        var cli = Assert.Throws<CliException>(() => FinetuneCommand.ShardOptimizerSetting("off", offload: true));
        Assert.That(cli!.Message, Does.Contain("--shard-optimizer off cannot be combined"));
        Assert.That(FinetuneCommand.ShardOptimizerSetting("auto", false), Is.Null);
        Assert.That(FinetuneCommand.ShardOptimizerSetting("on", false), Is.True);
    }

    [Test]
    public void PrefetchOnTheCommandLineNeedsAShardedBase()
    {
        Assert.That(Assert.Throws<CliException>(() => FinetuneCommand.CheckPrefetch(null, "auto"))!.Message, Does.Contain("add --gpus N"));
        Assert.That(Assert.Throws<CliException>(() => FinetuneCommand.CheckPrefetch(2, "off"))!.Message, Does.Contain("the base is replicated here (--shard-base off)"));
        Assert.That(Assert.Throws<CliException>(() => FinetuneCommand.CheckPrefetch(1, "auto"))!.Message, Does.Contain("--shard-base auto with --gpus 1"));
        Assert.DoesNotThrow(() => FinetuneCommand.CheckPrefetch(1, "on"));
        Assert.DoesNotThrow(() => FinetuneCommand.CheckPrefetch(2, "auto"));
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(dir.Replace(from, to, StringComparison.Ordinal));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, file.Replace(from, to, StringComparison.Ordinal));
    }
}
