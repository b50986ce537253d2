using NUnit.Framework;
using SlothSharp.Distributed;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary><see cref="TrainerOptions.RecomputeActivations"/> (<c>sloth finetune --recompute</c>): the trainer puts
/// RecomputeAttention and RecomputeNorms on the model, the losses do not change by a bit, a checkpoint keeps the
/// choice for resume, and a sharded model gets it before sharding.</summary>
public class RecomputeActivationsTests() : TempDirFixture("recompute")
{
    private static TrainingData Data() =>
        TrainingData.FromDocuments(HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir), TrainingCorpus.Documents, 24, packing: false);

    private TrainerOptions Options(bool recompute, string? outDir = null) => new()
    {
        Lora = new LoraConfig(Rank: 4, Alpha: 8, Dropout: 0.1), MaxSteps = 3, BatchSize = 2, SequenceLength = 24, LearningRate = 5e-3,
        Seed = 4, RecomputeActivations = recompute, OutputDirectory = outDir, SaveEvery = outDir is null ? 0 : 3,
    };

    [Test]
    public void TheLossesAreTheSameAndTheModelRecomputes()
    {
        var data = Data();
        List<double> kept, recomputed;
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(false)))
        {
            kept = trainer.Train().Losses.ToList();
            Assert.That(model.RecomputeAttention || model.RecomputeNorms, Is.False);
        }
        var outDir = Path.Combine(Dir, "out");
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(true, outDir)))
        {
            Assert.That(model.UseFusedKernels, Is.True, "the options act on the fused kernels");
            Assert.That(model.RecomputeAttention && model.RecomputeNorms, Is.True);
            recomputed = trainer.Train().Losses.ToList();
        }
        Assert.That(recomputed, Is.EqualTo(kept), "bit for bit (float32, CPU)");
        var resumed = TrainingCheckpoint.ReadOptions(TrainingCheckpoint.Resolve(outDir));
        Assert.That(resumed.RecomputeActivations, Is.True, "kept in the checkpoint for resume");
    }

    /// <summary>RecomputeNorms alone (<c>--recompute-norms</c>): only the norms recompute, same losses, kept for resume.</summary>
    [Test]
    public void NormsAloneRecomputeOnlyTheNorms()
    {
        var data = Data();
        List<double> kept, recomputed;
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(false)))
            kept = trainer.Train().Losses.ToList();
        var outDir = Path.Combine(Dir, "norms");
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(false, outDir) with { RecomputeNorms = true }))
        {
            Assert.That((model.RecomputeAttention, model.RecomputeNorms), Is.EqualTo((false, true)));
            recomputed = trainer.Train().Losses.ToList();
        }
        Assert.That(recomputed, Is.EqualTo(kept), "bit for bit (float32, CPU)");
        var resumed = TrainingCheckpoint.ReadOptions(TrainingCheckpoint.Resolve(outDir));
        Assert.That((resumed.RecomputeActivations, resumed.RecomputeNorms), Is.EqualTo((false, true)), "kept in the checkpoint for resume");
    }

    /// <summary>`sloth finetune --recompute-norms`: the choice reaches the trainer and the checkpoint.</summary>
    [Test]
    public void TheCliFlagsReachTheCheckpoint()
    {
        var data = Path.Combine(Dir, "docs.jsonl");
        File.WriteAllLines(data, TrainingCorpus.Documents.Select(d => new System.Text.Json.Nodes.JsonObject { ["text"] = d }.ToJsonString()));
        foreach (var (flag, attention, norms) in new[] { ("--recompute-norms", false, true), ("--recompute", true, false) })
        {
            var outDir = Path.Combine(Dir, flag.TrimStart('-'));
            var r = CliErrorTests.Sloth("finetune", "--model", LlamaGolden.Nf4Dir, "--data", data, "--out", outDir, "--device", "cpu",
                                        "--steps", "1", "--batch", "2", "--seq", "24", "--rank", "4", "--save-every", "1", flag);
            Assert.That(r.Code, Is.EqualTo(0), r.Err + r.Out);
            var saved = TrainingCheckpoint.ReadOptions(TrainingCheckpoint.Resolve(outDir));
            Assert.That((saved.RecomputeActivations, saved.RecomputeNorms), Is.EqualTo((attention, norms)), flag);
        }
    }

    [Test]
    public void AShardedModelGetsTheChoiceBeforeSharding()
    {
        var results = InProcessCommunicator.Run(2, c =>
        {
            using var sharded = ShardedCausalLM.LoadPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 }, c,
                m => { m.RecomputeAttention = true; m.RecomputeNorms = true; });
            // The trainer finds the choice made: it changes nothing, so the sharded model does not refuse.
            using var trainer = new Trainer(sharded.Model, Data(), Options(true) with { MaxSteps = 1 }, c);
            var losses = trainer.Train().Losses;
            Assert.Throws<InvalidOperationException>(() => sharded.Model.RecomputeNorms = false, "sharded: no changes");
            return (sharded.Model.RecomputeAttention && sharded.Model.RecomputeNorms, losses[0]);
        }, TimeSpan.FromMinutes(5));
        Assert.That(results.All(r => r.Item1), Is.True);
        Assert.That(double.IsFinite(results[0].Item2), Is.True);
    }
}
