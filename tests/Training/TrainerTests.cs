using System.Text;
using NUnit.Framework;
using SlothSharp.Cli;
using SlothSharp.Models;
using SlothSharp.Peft;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The trainer's promises: resume continues with exactly the losses of an uninterrupted run, gradient
/// accumulation equals one big batch, long documents are split without losing a target, and bad input fails clearly.</summary>
public class TrainerTests() : TempDirFixture("llama")
{
    private static readonly string[] Docs = TrainingCorpus.Documents;

    private static TrainingData Data(int seq, bool packing) =>
        TrainingData.FromDocuments(HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir), Docs, seq, packing);

    private TrainerOptions Options(string outDir, double dropout) => new()
    {
        Lora = new LoraConfig(Rank: 4, Alpha: 8, Dropout: dropout), MaxSteps = 6, BatchSize = 2, SequenceLength = 24,
        GradientAccumulation = 2, LearningRate = 5e-3, WarmupSteps = 2, Schedule = LearningRateSchedule.Cosine, MaxGradNorm = 1.0,
        Seed = 5, OutputDirectory = outDir, SaveEvery = 2, KeepCheckpoints = 2,
    };

    [TestCase(0.0, false)]
    [TestCase(0.1, true)]
    public void ResumeContinuesWithTheUninterruptedLosses(double dropout, bool packing)
    {
        var data = Data(24, packing);
        List<double> reference;
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(Path.Combine(Dir, "a"), dropout)))
            reference = trainer.Train().Losses.ToList();
        Assert.That(reference, Has.Count.EqualTo(6));
        Assert.That(reference.All(double.IsFinite), Is.True);

        // Interrupted after step 3 (as Ctrl-C does: the step finishes, then a checkpoint is written).
        var outB = Path.Combine(Dir, "b");
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(outB, dropout)))
        {
            using var cts = new CancellationTokenSource();
            var partial = trainer.Train(new FinetuneProgress.SyncProgress<TrainProgress>(p => { if (p.Step == 3) cts.Cancel(); }), cts.Token);
            Assert.That(partial.Interrupted, Is.True);
            Assert.That(partial.Steps, Is.EqualTo(3));
            Assert.That(partial.LastCheckpoint, Does.EndWith("step-000003"));
            Assert.That(partial.Losses, Is.EqualTo(reference.Take(3)), "the same first steps");
        }
        var checkpoints = Directory.GetDirectories(Path.Combine(outB, "checkpoints")).Select(Path.GetFileName).Order().ToArray();
        Assert.That(checkpoints, Is.EqualTo(new[] { "step-000002", "step-000003" }), "periodic + interruption checkpoints, no temporary leftovers");
        Assert.That(File.Exists(Path.Combine(outB, PeftAdapter.ConfigFile)), Is.False, "no final adapter for an interrupted run");

        // A new process state: the model loaded from disk again, a new trainer, resume from the output directory.
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, TrainingCheckpoint.ReadOptions(TrainingCheckpoint.Resolve(outB))))
        {
            trainer.ResumeFrom(outB);
            Assert.That(trainer.Step, Is.EqualTo(3));
            var resumed = trainer.Train();
            Assert.That(resumed.Losses, Is.EqualTo(reference), "steps 4..6 equal the uninterrupted run's (float32 CPU: exactly)");
            Assert.That(resumed.AdapterDirectory, Is.EqualTo(outB));
        }
        Assert.That(File.Exists(Path.Combine(outB, PeftAdapter.WeightsFile)), Is.True, "final adapter written");
        Assert.That(Directory.GetDirectories(Path.Combine(outB, "checkpoints")).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[] { "step-000004", "step-000006" }), "only the newest KeepCheckpoints remain");
    }

    [Test]
    public void ResumeWithOtherSettingsOrDataIsRefused()
    {
        var data = Data(24, packing: false);
        var outDir = Path.Combine(Dir, "run");
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(outDir, 0) with { MaxSteps = 2 }))
            trainer.Train();
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, data, Options(outDir, 0) with { MaxSteps = 2, LearningRate = 1e-3 }))
        {
            var e = Assert.Throws<InvalidDataException>(() => trainer.ResumeFrom(outDir))!;
            Assert.That(e.Message, Does.Contain("lr").And.Contain(TrainingCheckpoint.StateFile));
        }
        using (var model = LlamaGolden.LoadBase())
        using (var trainer = new Trainer(model, Data(24, packing: true), Options(outDir, 0) with { MaxSteps = 2 }))
        {
            var e = Assert.Throws<InvalidDataException>(() => trainer.ResumeFrom(outDir))!;
            Assert.That(e.Message, Does.Contain("training data differs"));
        }
    }

    [Test]
    public void GradientAccumulationEqualsOneLargeBatch()
    {
        var data = Data(24, packing: false);
        TrainerOptions O(int batch, int accum) => new()
        {
            Lora = new LoraConfig(Rank: 4, Alpha: 8), MaxSteps = 2, BatchSize = batch, GradientAccumulation = accum, SequenceLength = 24,
            LearningRate = 5e-3, Schedule = LearningRateSchedule.Constant, MaxGradNorm = null, Shuffle = false, Seed = 9,
        };
        using var m1 = LlamaGolden.LoadBase();
        using var m2 = LlamaGolden.LoadBase();
        using var t1 = new Trainer(m1, data, O(4, 1));
        using var t2 = new Trainer(m2, data, O(1, 4));
        var l1 = t1.Train().Losses;
        var l2 = t2.Train().Losses;
        // One global token normalizer: 4 micro-batches of 1 row give the large batch's loss, not a mean of row means.
        Assert.That(l2, Is.EqualTo(l1).Within(1e-5));
        foreach (var (a, b) in m1.LoraParameters().Zip(m2.LoraParameters()))
            TestEnv.AssertClose(b.Value, a.Value, 1e-3, a.Key);  // Adam divides by |g|: near-zero gradients amplify rounding
    }

    [Test]
    public void LongDocumentsAreSplitIntoWindowsSharingOneToken()
    {
        var tokens = Enumerable.Range(100, 23).ToArray();
        var windows = TrainingData.Windows(tokens, 8).ToList();
        Assert.That(windows.All(w => w.Length <= 8 && w.Length >= 2), Is.True);
        for (var i = 1; i < windows.Count; i++) Assert.That(windows[i][0], Is.EqualTo(windows[i - 1][^1]), "consecutive windows overlap by one token");
        // Every next-token target (tokens[1..]) is trained exactly once.
        var targets = windows.SelectMany(w => w.Skip(1)).ToArray();
        Assert.That(targets, Is.EqualTo(tokens.Skip(1).ToArray()));

        var tokenizer = HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir);
        var doc = string.Join(" ", Enumerable.Repeat("a document much longer than the sequence length", 6));
        var data = TrainingData.FromDocuments(tokenizer, [doc], 16, packing: false);
        var ids = tokenizer.Encode(doc, addBos: true).Append(tokenizer.EosTokenId!.Value).ToArray();
        Assert.That(data.Rows.Count, Is.GreaterThan(1));
        Assert.That(data.Rows.SelectMany(r => r.Skip(1)), Is.EqualTo(ids.Skip(1)), "split, nothing lost");
        Assert.That(data.Rows[0][0], Is.EqualTo(tokenizer.BosTokenId), "BOS first");

        var packed = TrainingData.FromDocuments(tokenizer, ["one", "two"], 64, packing: true);
        Assert.That(packed.Rows, Has.Count.EqualTo(1));
        var eos = tokenizer.EosTokenId!.Value;
        Assert.That(packed.Rows[0].Count(t => t == eos), Is.EqualTo(2), "EOS after each packed document");
    }

    [Test]
    public void LearningRateScheduleFollowsTransformers()
    {
        var o = new TrainerOptions { LearningRate = 1.0, WarmupSteps = 4, Schedule = LearningRateSchedule.Cosine };
        Assert.That(o.LearningRateAt(0, 14), Is.EqualTo(0));
        Assert.That(o.LearningRateAt(2, 14), Is.EqualTo(0.5));
        Assert.That(o.LearningRateAt(4, 14), Is.EqualTo(1.0));
        Assert.That(o.LearningRateAt(9, 14), Is.EqualTo(0.5).Within(1e-12));
        var lin = o with { Schedule = LearningRateSchedule.Linear };
        Assert.That(lin.LearningRateAt(9, 14), Is.EqualTo(0.5).Within(1e-12));
        Assert.That((o with { Schedule = LearningRateSchedule.Constant }).LearningRateAt(13, 14), Is.EqualTo(1.0));
    }

    [Test]
    public void FinetuneCommandWritesAdapterReportsAndCheckpoints()
    {
        var dataFile = Path.Combine(Dir, "train.txt");
        File.WriteAllLines(dataFile, Docs);
        var outDir = Path.Combine(Dir, "out");
        var options = new TrainerOptions
        {
            Lora = new LoraConfig(Rank: 4, Alpha: 8), MaxSteps = 3, BatchSize = 2, SequenceLength = 32, OutputDirectory = outDir, SaveEvery = 2,
        };
        Assert.That(FinetuneCommand.Run(LlamaGolden.Nf4Dir, dataFile, options, null, CPU, null), Is.EqualTo(0));
        foreach (var f in new[] { PeftAdapter.ConfigFile, PeftAdapter.WeightsFile, "losses.csv", "loss.png", "summary.md" })
            Assert.That(File.Exists(Path.Combine(outDir, f)), Is.True, f);
        Assert.That(File.ReadAllLines(Path.Combine(outDir, "losses.csv")), Has.Length.EqualTo(4), "header + 3 steps");
        Assert.That(Directory.Exists(Path.Combine(outDir, "checkpoints", "step-000003")), Is.True);

        // The adapter loads back, and merge writes a dense checkpoint from it.
        var merged = Path.Combine(Dir, "merged");
        Assert.That(MergeCommand.Run(LlamaGolden.Nf4Dir, outDir, merged, ScalarType.BFloat16), Is.EqualTo(0));
        Assert.That(File.Exists(Path.Combine(merged, "model.safetensors")), Is.True);
        Assert.That(File.Exists(Path.Combine(merged, "generation_config.json")), Is.True);
    }

    [Test]
    public void BadDataFilesFailNamingTheFile()
    {
        var options = new TrainerOptions { MaxSteps = 1, BatchSize = 1, SequenceLength = 16, OutputDirectory = Path.Combine(Dir, "out") };
        var empty = Path.Combine(Dir, "empty.txt");
        File.WriteAllText(empty, "");
        var e1 = Assert.Catch(() => FinetuneCommand.Run(LlamaGolden.Nf4Dir, empty, options, null, CPU, null))!;
        Assert.That(e1.Message, Does.Contain(empty));

        var binary = Path.Combine(Dir, "latin1.txt");
        File.WriteAllBytes(binary, [0x48, 0xE9, 0x6C, 0x6C, 0xF6, 0x0A, 0xFF, 0xFE, 0x0A]);  // Latin-1, not UTF-8
        var e2 = Assert.Catch(() => FinetuneCommand.Run(LlamaGolden.Nf4Dir, binary, options, null, CPU, null))!;
        Assert.That(e2.Message, Does.Contain(binary));

        var missing = Path.Combine(Dir, "missing.txt");
        Assert.Throws<FileNotFoundException>(() => FinetuneCommand.Run(LlamaGolden.Nf4Dir, missing, options, null, CPU, null));
        foreach (var (option, value) in new[] { ("--targets", "q_proj,lm_head"), ("--schedule", "exponential") })
            CliErrorTests.AssertBadInput(CliErrorTests.Sloth("finetune", "--model", LlamaGolden.Nf4Dir, "--data", binary, "--out", Path.Combine(Dir, "o"),
                                                             option, value), option, value.Split(',')[^1]);
        var err = new StringWriter();
        var code = SlothCli.Run(["finetune", "--model", LlamaGolden.Nf4Dir, "--data", binary, "--out", Path.Combine(Dir, "o"), "--device", "cpu"],
            TextWriter.Null, err);
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput), "expected failures exit with 2");
        Assert.That(err.ToString(), Does.StartWith("error: ").And.Contain(binary));
        Assert.That(Encoding.UTF8.GetString(File.ReadAllBytes(binary)), Does.Contain("\uFFFD"), "the file really is not UTF-8");
    }
}
