using NUnit.Framework;
using SlothSharp.Cli;
using SlothSharp.Distributed;
using SlothSharp.Models;
using SlothSharp.Peft;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// The data-parallel <see cref="Trainer"/> on the CPU with ranks as threads: N ranks (each computing its rows of every
/// micro-batch, one global target count, gradients summed) take the 1-rank run's steps, with the NF4 base replicated
/// or sharded (<see cref="ShardedCausalLM"/>); only rank 0 writes; a stop seen by one rank stops all after the same step.
/// </summary>
public class DistributedTrainerTests() : TempDirFixture("llama")
{
    private static readonly TimeSpan Wait = TimeSpan.FromMinutes(5);

    // One more document than the single-process tests: seven rows of uneven length make the ranks' token counts differ.
    private static readonly string[] Docs = [.. TrainingCorpus.Documents, "Seven rows of uneven length make the ranks' token counts differ."];

    internal static TrainingData Data() =>
        TrainingData.FromDocuments(HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir), Docs, 24, packing: false);

    internal static TrainerOptions Options(string? outDir) => new()
    {
        Lora = new LoraConfig(Rank: 4, Alpha: 8, Dropout: 0), MaxSteps = 4, BatchSize = 3, SequenceLength = 24,
        GradientAccumulation = 2, LearningRate = 5e-3, WarmupSteps = 1, MaxGradNorm = 1.0, Seed = 5,
        OutputDirectory = outDir, SaveEvery = 2, KeepCheckpoints = 2,
    };

    internal static Dictionary<string, Tensor> Adapters(CausalLM model) =>
        model.LoraParameters().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().clone());

    [TestCase(1, false, false)]
    [TestCase(2, false, false)]
    [TestCase(3, false, false)]
    [TestCase(2, true, false)]
    [TestCase(3, true, false)]
    [TestCase(1, true, true)]
    [TestCase(3, true, true)]
    public void NRankStepsEqualTheOneRankRun(int ranks, bool shardBase, bool loadSharded)
    {
        var data = Data();
        List<double> refLosses;
        Dictionary<string, Tensor> refAdapters;
        using (var model = LlamaGolden.LoadBase())
        {
            // ShardedCausalLM runs the plain (unfused) NF4 + LoRA path; the reference takes the same path, so the
            // comparison measures the distribution, not the fused kernel's different rounding.
            if (shardBase) model.UseFusedKernels = false;
            using var trainer = new Trainer(model, data, Options(null));
            refLosses = trainer.Train().Losses.ToList();
            refAdapters = Adapters(model);
        }
        var results = InProcessCommunicator.Run(ranks, c =>
        {
            var options = Options(null);
            // loadSharded: each rank reads only its shard (adapters added by the trainer, after sharding);
            // otherwise the whole model is loaded, the adapters added, then the base sharded in place.
            using var loaded = loadSharded
                ? ShardedCausalLM.LoadPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 }, c)
                : null;
            using var whole = loadSharded ? null : LlamaGolden.LoadBase();
            var model = loaded?.Model ?? whole!;
            if (!loadSharded) model.AddLora(options.Lora, options.Seed);
            using var sharded = shardBase && !loadSharded ? new ShardedCausalLM(model, c) : loaded;
            using var trainer = new Trainer(model, data, options, c);
            var result = trainer.Train();
            return (result.Losses.ToList(), Adapters(model), result.Tokens, sharded?.ShardBytes, sharded?.FullBytes);
        }, Wait);
        for (var r = 0; r < ranks; r++)
        {
            var (losses, adapters, tokens, shardBytes, fullBytes) = results[r];
            Assert.That(losses, Has.Count.EqualTo(refLosses.Count));
            for (var s = 0; s < losses.Count; s++)
                Assert.That(losses[s], Is.EqualTo(refLosses[s]).Within(1e-5 * Math.Max(1, Math.Abs(refLosses[s]))), $"rank {r} step {s + 1} loss");
            foreach (var (name, p) in adapters)
            {
                Assert.That(LlamaGolden.MaxAbs(p, refAdapters[name]), Is.LessThanOrEqualTo(1e-5), $"rank {r} {name}");
                Assert.That(TestEnv.BitEqual(p, results[0].Item2[name]), Is.True, $"rank {r} {name}: replicas differ");
            }
            Assert.That(tokens, Is.EqualTo(results[0].Tokens), "every rank counts the global tokens");
            if (shardBase && ranks > 1) Assert.That(shardBytes!.Value, Is.LessThanOrEqualTo(fullBytes!.Value / ranks + fullBytes.Value / 50), "a rank keeps ~1/N of the NF4 bytes");
        }
        TestContext.Out.WriteLine($"{ranks} ranks (base {(loadSharded ? "loaded sharded" : shardBase ? "sharded" : "replicated")}): losses {string.Join(", ", results[0].Item1.Select(l => l.ToString("R")))} " +
                                  $"vs {string.Join(", ", refLosses.Select(l => l.ToString("R")))}");
    }

    [Test]
    public void OnlyRankZeroWritesAndAStopOnOneRankStopsAll()
    {
        var data = Data();
        var outDir = Path.Combine(Dir, "out");
        var results = InProcessCommunicator.Run(2, c =>
        {
            using var model = LlamaGolden.LoadBase();
            using var trainer = new Trainer(model, data, Options(outDir) with { MaxSteps = 6 }, c);
            using var cts = new CancellationTokenSource();
            // Only rank 1 sees the "signal", after step 3.
            var result = trainer.Train(new FinetuneProgress.SyncProgress<TrainProgress>(p => { if (c.Rank == 1 && p.Step == 3) cts.Cancel(); }), cts.Token);
            Exception? saveError = null;
            if (c.Rank == 1)
            {
                try
                {
                    trainer.SaveCheckpoint();
                }
                catch (InvalidOperationException e)
                {
                    saveError = e;
                }
            }
            return (result, trainer.IsWriter, saveError);
        }, Wait);
        Assert.That(results.Select(r => r.result.Steps), Is.EqualTo(new[] { 3, 3 }), "both ranks stop after step 3");
        Assert.That(results.All(r => r.result.Interrupted), Is.True);
        Assert.That((results[0].IsWriter, results[1].IsWriter), Is.EqualTo((true, false)));
        Assert.That(results[0].result.LastCheckpoint, Does.EndWith("step-000003"));
        Assert.That(results[1].result.LastCheckpoint, Is.Null, "rank 1 writes nothing");
        Assert.That(results[1].saveError!.Message, Does.Contain("rank 1 does not write checkpoints"));
        var checkpoints = Directory.GetDirectories(Path.Combine(outDir, "checkpoints")).Select(Path.GetFileName).Order().ToArray();
        Assert.That(checkpoints, Is.EqualTo(new[] { "step-000002", "step-000003" }), "rank 0's checkpoints, no temporary leftovers");
        Assert.That(Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "checkpoints" }), "no adapter for an interrupted run");

        // A resumed 2-rank run finishes and rank 0 writes the adapter; equal to the uninterrupted 1-rank run.
        List<double> reference;
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(Path.Combine(Dir, "ref")) with { MaxSteps = 6 }))
            reference = trainer.Train().Losses.ToList();
        var resumed = InProcessCommunicator.Run(2, c =>
        {
            using var model = LlamaGolden.LoadBase();
            using var trainer = new Trainer(model, data, Options(outDir) with { MaxSteps = 6 }, c);
            trainer.ResumeFrom(outDir);
            return trainer.Train();
        }, Wait);
        Assert.That(resumed[0].AdapterDirectory, Is.EqualTo(outDir));
        Assert.That(resumed[1].AdapterDirectory, Is.Null);
        Assert.That(File.Exists(Path.Combine(outDir, PeftAdapter.ConfigFile)), Is.True);
        for (var s = 0; s < 6; s++)
            Assert.That(resumed[0].Losses[s], Is.EqualTo(reference[s]).Within(1e-5 * Math.Max(1, reference[s])), $"step {s + 1}");
    }

    [Test]
    public void ABatchSmallerThanTheRanksIsRejected()
    {
        var data = Data();
        var errors = InProcessCommunicator.Run(3, c =>
        {
            using var model = LlamaGolden.LoadBase();
            try
            {
                using var trainer = new Trainer(model, data, Options(null) with { BatchSize = 2 }, c);
                return "no error";
            }
            catch (ArgumentException e)
            {
                return e.Message;
            }
        }, Wait);
        Assert.That(errors[0], Does.Contain("BatchSize 2 is below the number of ranks 3"));
    }
}
