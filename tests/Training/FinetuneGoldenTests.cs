using NUnit.Framework;
using SlothSharp.Generation;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Peft;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// SlothSharp's LoRA fine-tuning against transformers 5.17 + PEFT 0.21 on tests/data/hf-tiny-llama (float32, CPU):
/// the NF4 base + PEFT's adapter give PEFT's logits, loss and LoRA gradients; three AdamW steps through
/// <see cref="Trainer"/> give PEFT's losses; greedy generation after them gives transformers' tokens; merging gives
/// a dense model with the same logits.
/// </summary>
public class FinetuneGoldenTests
{
    /// <summary>Logits are O(1); the NF4 weights are the same bytes, so only float32 summation order differs.</summary>
    private const double LogitTolerance = 1e-4;

    private static (CausalLM Model, Tensor Ids, Tensor Mask, Tensor Labels) ModelWithAdapter()
    {
        var model = LlamaGolden.LoadBase();
        PeftAdapter.Load(model, LlamaGolden.AdapterDir);
        var (ids, mask, labels) = LlamaGolden.Batch();
        return (model, ids, mask, labels);
    }

    /// <summary>Max |a − b| over the positions where mask is 1 (padded positions' logits are not compared: transformers
    /// computes them with a different attention pattern for padding queries, and they never matter).</summary>
    private static double MaxAbsDiffOnTokens(Tensor a, Tensor b, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var m = mask.to(ScalarType.Bool).unsqueeze(-1);
        return (a - b).abs().masked_fill(m.logical_not(), 0).max().item<float>();
    }

    private static Tensor ShiftedLoss(CausalLM model, Tensor ids, Tensor mask, Tensor labels)
    {
        var hidden = model.Forward(ids, mask);
        var t = hidden.shape[1];
        return FusedLinearCrossEntropy.Apply(hidden.narrow(1, 0, t - 1), model.LmHeadWeight, null, labels.narrow(1, 1, t - 1));
    }

    [Test]
    public void LogitsAndLossWithThePeftAdapterMatchPeft()
    {
        using var scope = NewDisposeScope();
        var (model, ids, mask, labels) = ModelWithAdapter();
        using var _ = model;
        model.eval();
        using var r = new SafetensorsReader(LlamaGolden.ExpectedFile);
        using (no_grad())
        {
            var logits = model.Logits(model.Forward(ids, mask));
            var diff = MaxAbsDiffOnTokens(logits, r.Read("logits_lora"), mask);
            Assert.That(diff, Is.LessThanOrEqualTo(LogitTolerance), "logits_lora");
            var loss = ShiftedLoss(model, ids, mask, labels).item<float>();
            Assert.That(loss, Is.EqualTo(LlamaGolden.Expected("loss_lora")).Within(1e-5), "loss_lora");
        }
    }

    [Test]
    public void LoraGradientsMatchPeft()
    {
        using var scope = NewDisposeScope();
        var (model, ids, mask, labels) = ModelWithAdapter();
        using var _ = model;
        model.train();  // dropout 0: same as eval, but the training path
        ShiftedLoss(model, ids, mask, labels).backward();
        using var r = new SafetensorsReader(LlamaGolden.ExpectedFile);
        var checkedCount = 0;
        foreach (var (name, p) in model.LoraParameters())
        {
            var expected = r.Read("grad." + PeftAdapter.KeyPrefix + name);
            Assert.That(p.grad, Is.Not.Null, name);
            TestEnv.AssertClose(p.grad!, expected, 1e-4, "grad of " + name);
            checkedCount++;
        }
        Assert.That(checkedCount, Is.EqualTo(r.Entries.Keys.Count(k => k.StartsWith("grad.", StringComparison.Ordinal))), "every golden gradient checked");
    }

    /// <summary>Three AdamW steps (lr 1e-2, torch defaults, weight decay 0.01, same batch, constant lr, no clipping)
    /// through the Trainer, then transformers' greedy generation.</summary>
    [Test]
    public void ThreeAdamWStepsAndGreedyGenerationMatchPeft()
    {
        using var scope = NewDisposeScope();
        var (model, ids, mask, labels) = ModelWithAdapter();
        using var _ = model;
        var data = TrainingData.FromTokenRows(LlamaGolden.Rows(), sequenceLength: (int)ids.shape[1], padId: 2);
        var options = new TrainerOptions
        {
            Lora = model.Lora!, MaxSteps = 3, BatchSize = 2, SequenceLength = (int)ids.shape[1], LearningRate = 1e-2,
            Schedule = LearningRateSchedule.Constant, WarmupSteps = 0, MaxGradNorm = null, Shuffle = false,
        };
        using var trainer = new Trainer(model, data, options);
        var result = trainer.Train();
        var expected = LlamaGolden.ExpectedJson["adamw_losses"]!.AsArray().Select(n => n!.GetValue<double>()).ToArray();
        Assert.That(result.Losses, Is.EqualTo(expected).Within(1e-4), "adamw_losses");
        Assert.That(result.Interrupted, Is.False);

        model.eval();
        using (no_grad())
        {
            var after = ShiftedLoss(model, ids, mask, labels).item<float>();
            Assert.That(after, Is.EqualTo(LlamaGolden.Expected("loss_after_3_steps")).Within(1e-4), "loss_after_3_steps");
        }

        var prompt = LlamaGolden.ExpectedJson["generate_prompt_ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        var want = LlamaGolden.ExpectedJson["generate_ids"]!.AsArray().Select(n => n!.GetValue<int>()).Skip(prompt.Length).ToArray();
        var margins = LlamaGolden.ExpectedJson["generate_top2_margins"]!.AsArray().Select(n => n!.GetValue<double>()).ToArray();
        var got = TextGenerator.Generate(model, prompt, new GenerationOptions(MaxNewTokens: want.Length)).ToArray();
        Assert.That(got.Length, Is.EqualTo(want.Length), "no EOS in the golden continuation");
        for (var i = 0; i < want.Length; i++)
        {
            if (got[i] == want[i]) continue;
            // A different token is only acceptable where transformers' top two logits were closer than our error.
            Assert.That(margins[i], Is.LessThanOrEqualTo(1e-3), $"token {i}: got {got[i]}, transformers {want[i]} (top-2 margin {margins[i]})");
            break;  // after a legitimate tie the sequences may diverge
        }
    }

    [Test]
    public void MergedDenseCheckpointGivesTheSameLogits()
    {
        using var scope = NewDisposeScope();
        var (model, ids, mask, _) = ModelWithAdapter();
        using var _ = model;
        model.eval();
        var dir = LlamaGolden.NewTempDir();
        try
        {
            var merged = Path.Combine(dir, "merged");
            MergedCheckpoint.Write(model, merged, ScalarType.Float32);
            Assert.That(File.ReadAllText(Path.Combine(merged, "config.json")), Does.Not.Contain("quantization_config"));
            Assert.That(File.Exists(Path.Combine(merged, "tokenizer.json")), Is.True, "tokenizer copied");
            using var dense = CausalLM.FromPretrained(merged, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = false });
            Assert.That(dense.IsQuantized, Is.False);
            Assert.That(dense.Lora, Is.Null);
            dense.eval();
            using (no_grad())
            {
                var a = model.Logits(model.Forward(ids, mask));
                var b = dense.Logits(dense.Forward(ids, mask));
                Assert.That(MaxAbsDiffOnTokens(b, a, mask), Is.LessThanOrEqualTo(LogitTolerance), "merged vs base + adapter");
            }
            Assert.Throws<IOException>(() => MergedCheckpoint.Write(model, merged, ScalarType.Float32), "an existing non-empty directory is not overwritten");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
