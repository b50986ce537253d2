using NUnit.Framework;
using SlothSharp.Generation;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Peft;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Every family against what transformers, bitsandbytes and PEFT computed on the same tiny checkpoints
/// (tests/data/hf-tiny-families): float32 losses of the NF4 base and with the PEFT adapter within 2e-4, the dense
/// checkpoint quantized on load giving the NF4 loss (bit-identical quantization), greedy ids equal, and the fused
/// path's LoRA gradients equal to autograd's on the reference path.</summary>
[TestFixtureSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
public sealed class FamilyGoldenTests(string family)
{
    private const double LossTolerance = 2e-4;

    [Test]
    public void ConfigReadsAsItsFamily()
    {
        var cfg = ModelConfig.Load(Path.Combine(FamilyGolden.Nf4(family), "config.json"));
        Assert.That(cfg.Family.Name, Is.EqualTo(family));
        Assert.That(DecoderLayout.ProjectionNames(cfg).Order(),
            Is.EqualTo(FamilyGolden.Expected(family)["lora_targets"]!.AsArray().Select(n => n!.GetValue<string>()).Order()),
            "all-linear resolves to PEFT's module names");
    }

    [Test]
    public void Nf4BaseLossMatchesTransformers()
    {
        using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        Assert.That(FamilyGolden.Loss(model, family), Is.EqualTo(FamilyGolden.Expected(family)["loss_base"]!.GetValue<double>()).Within(LossTolerance));
    }

    [Test]
    public void DenseCheckpointQuantizedOnLoadGivesTheSameLoss()
    {
        using var model = FamilyGolden.Load(FamilyGolden.Dense(family));
        Assert.That(model.IsQuantized, Is.True);
        Assert.That(FamilyGolden.Loss(model, family), Is.EqualTo(FamilyGolden.Expected(family)["loss_base"]!.GetValue<double>()).Within(LossTolerance));
    }

    [Test]
    public void PeftAdapterLossMatchesPeft()
    {
        using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        Assert.That(FamilyGolden.Loss(model, family), Is.EqualTo(FamilyGolden.Expected(family)["loss_lora"]!.GetValue<double>()).Within(LossTolerance));
        foreach (var fused in new[] { true, false })
        {
            // The one causal-LM loss (fused LM-head CE with the family's soft-cap) on both kernel sets.
            model.UseFusedKernels = fused;
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var (ids, mask, labels) = FamilyGolden.Batch(family);
            var loss = CausalLmLoss.Compute(model, model.Forward(ids, mask), labels).item<float>();
            Assert.That(loss, Is.EqualTo(FamilyGolden.Expected(family)["loss_lora"]!.GetValue<double>()).Within(LossTolerance), $"fused kernels {fused}");
        }
    }

    [Test]
    public void GreedyGenerationMatchesTransformers()
    {
        var e = FamilyGolden.Expected(family);
        using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        var prompt = e["generate_prompt_ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        var expected = e["generate_ids"]!.AsArray().Select(n => n!.GetValue<int>()).Skip(prompt.Length).ToArray();
        var got = TextGenerator.Generate(model, prompt, new GenerationOptions(MaxNewTokens: expected.Length, StopTokenIds: [])).ToArray();
        Assert.That(got, Is.EqualTo(expected));
    }

    [Test]
    public void FusedLoraGradientsEqualAutogradOnTheReferencePath()
    {
        using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        model.train();
        var grads = new Dictionary<bool, List<Tensor>>();
        foreach (var fused in new[] { false, true })
        {
            model.UseFusedKernels = fused;
            foreach (var (_, p) in model.LoraParameters()) p.grad?.zero_();
            using (var scope = NewDisposeScope())
            {
                var (ids, mask, labels) = FamilyGolden.Batch(family);
                CausalLmLoss.Compute(model, model.Forward(ids, mask), labels).backward();
            }
            grads[fused] = model.LoraParameters().Select(p => p.Value.grad!.clone()).ToList();
        }
        for (var i = 0; i < grads[true].Count; i++)
        {
            var reference = grads[false][i];
            var scale = reference.abs().max().item<float>() + 1e-12;
            Assert.That(LlamaGolden.MaxAbs(grads[true][i], reference) / scale, Is.LessThan(1e-4), model.LoraParameters()[i].Key);
        }
        Assert.That(grads[false].Sum(g => g.abs().sum().item<float>()), Is.GreaterThan(0), "the gradients are not all zero");
    }

    /// <summary>Gradient checkpointing (every layer, and every second layer) gives the adapter's gradients of the plain
    /// backward: the first layer's input made again from the token ids in backward (Gemma's scaled embeddings too),
    /// the other layers' inputs kept.</summary>
    [Test]
    public void GradientCheckpointingGivesTheSameAdapterGradients()
    {
        using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        model.train();
        var (ids, mask, labels) = FamilyGolden.Batch(family);
        List<Tensor> Grads(bool checkpoint, int interval)
        {
            model.GradientCheckpointing = checkpoint;
            model.GradientCheckpointingInterval = interval;
            foreach (var (_, p) in model.LoraParameters()) p.grad = null;
            using (var scope = NewDisposeScope()) CausalLmLoss.Compute(model, model.Forward(ids, mask), labels).backward();
            return model.LoraParameters().Select(kv => kv.Value.grad!.clone()).ToList();
        }
        var plain = Grads(false, 1);
        foreach (var interval in new[] { 1, 2 })
        {
            var recomputed = Grads(true, interval);
            for (var i = 0; i < plain.Count; i++)
                Assert.That(TestEnv.RelativeError(recomputed[i], plain[i]), Is.LessThanOrEqualTo(1e-6), $"interval {interval}: {model.LoraParameters()[i].Key}");
        }
        model.GradientCheckpointing = false;
    }

    [Test]
    public void MergedCheckpointReloadsWithTheAdaptersLoss()
    {
        var dir = LlamaGolden.NewTempDir();
        try
        {
            using (var model = FamilyGolden.Load(FamilyGolden.Nf4(family)))
            {
                PeftAdapter.Load(model, FamilyGolden.Adapter(family));
                MergedCheckpoint.Write(model, Path.Combine(dir, "merged"), ScalarType.Float32);
            }
            using var merged = FamilyGolden.Load(Path.Combine(dir, "merged"), quantize: false);
            Assert.That(merged.Config.Family.Name, Is.EqualTo(family));
            Assert.That(FamilyGolden.Loss(merged, family), Is.EqualTo(FamilyGolden.Expected(family)["loss_lora"]!.GetValue<double>()).Within(LossTolerance));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void AdapterRoundTripsThroughPeftFiles()
    {
        var dir = LlamaGolden.NewTempDir();
        try
        {
            double before;
            using (var model = FamilyGolden.Load(FamilyGolden.Nf4(family)))
            {
                PeftAdapter.Load(model, FamilyGolden.Adapter(family));
                before = FamilyGolden.Loss(model, family);
                PeftAdapter.Save(model, dir);
            }
            using var again = FamilyGolden.Load(FamilyGolden.Nf4(family));
            PeftAdapter.Load(again, dir);
            Assert.That(FamilyGolden.Loss(again, family), Is.EqualTo(before).Within(1e-7));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void RandomCheckpointOfTheFamilyWritesAndLoads()
    {
        var dir = LlamaGolden.NewTempDir();
        try
        {
            var cfg = ModelConfig.Load(Path.Combine(FamilyGolden.Dense(family), "config.json"));
            CheckpointWriter.WriteRandom(Path.Combine(dir, "bnb"), cfg, seed: 3, bnb4bit: true);
            using var model = FamilyGolden.Load(Path.Combine(dir, "bnb"));
            Assert.That(model.Config.Family.Name, Is.EqualTo(family));
            using var noGrad = no_grad();
            var logits = model.Logits(model.Forward(tensor(new long[] { 0, 5, 9, 13 }).reshape(1, 4)));
            Assert.That(logits.isfinite().all().item<bool>(), Is.True);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
