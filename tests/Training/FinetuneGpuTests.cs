using NUnit.Framework;
using SlothSharp.Models;
using SlothSharp.Peft;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Fine-tuning on CUDA in bf16 (the lead runs these on the GPU machine): the loss falls, checkpoints resume,
/// the saved adapter is the trained one, and gradient checkpointing gives the same losses.</summary>
[Category("Gpu")]
public class FinetuneGpuTests
{
    private static readonly string[] Docs =
    [
        "The sloth hangs from the branch and reads the weights four bits at a time.",
        "Every gradient that reaches the adapters is float32, whatever the compute dtype of the base model is.",
        "Make an iterator that aggregates elements from each of the iterables.",
    ];

    private static CausalLM Load() =>
        CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.BFloat16 });

    private static TrainerOptions Options(string outDir, bool checkpointing = false) => new()
    {
        Lora = new LoraConfig(Rank: 8, Alpha: 16, Dropout: 0.05), MaxSteps = 30, BatchSize = 4, SequenceLength = 32, Packing = true,
        LearningRate = 1e-2, WarmupSteps = 3, Seed = 3, OutputDirectory = outDir, SaveEvery = 10, GradientCheckpointing = checkpointing,
    };

    [Test]
    public void Bf16TrainingOnCudaLearnsResumesAndSaves()
    {
        TestEnv.RequireCuda();
        var dir = LlamaGolden.NewTempDir();
        try
        {
            var data = TrainingData.FromDocuments(HfTokenizer.FromDirectory(LlamaGolden.Nf4Dir), Docs, 32, packing: true);
            List<double> reference;
            using (var model = Load())
            using (var trainer = new Trainer(model, data, Options(Path.Combine(dir, "a"))))
            {
                var r = trainer.Train();
                reference = r.Losses.ToList();
                Assert.That(reference.TakeLast(5).Average(), Is.LessThan(reference.Take(5).Average() - 0.5), "the loss falls on a repeated text");
                Assert.That(model.LoraParameters().All(p => p.Value.dtype == ScalarType.Float32), Is.True, "adapters stay float32");
                using var reloaded = Load();
                PeftAdapter.Load(reloaded, Path.Combine(dir, "a"));
                foreach (var (x, y) in model.LoraParameters().Zip(reloaded.LoraParameters()))
                    Assert.That(TestEnv.BitEqual(x.Value.cpu(), y.Value.cpu()), Is.True, x.Key);
            }
            using (var model = Load())
            using (var trainer = new Trainer(model, data, Options(Path.Combine(dir, "a"))))
            {
                trainer.ResumeFrom(Path.Combine(dir, "a", "checkpoints", "step-000020"));
                var resumed = trainer.Train().Losses;
                // bf16 on CUDA: same kernels and shapes, so in practice identical; allow a few bf16 roundoffs.
                Assert.That(resumed.Skip(20), Is.EqualTo(reference.Skip(20)).Within(2e-2));
            }
            using (var model = Load())
            using (var trainer = new Trainer(model, data, Options(Path.Combine(dir, "c"), checkpointing: true) with { MaxSteps = 5 }))
            {
                var withCheckpointing = trainer.Train().Losses;
                Assert.That(withCheckpointing, Is.EqualTo(reference.Take(5)).Within(2e-2), "gradient checkpointing changes memory, not the math");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
