using NUnit.Framework;
using SlothSharp.Losses;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The fused decoder (UseFusedKernels) against the plain TorchSharp path on the same NF4 weights, and the
/// in-memory random model the step benchmark builds.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class LlamaFusedTests(string device) : DeviceFixture(device)
{
    private static readonly ModelConfig Config = ModelPresets.Tiny with { QkvBias = true, OutputBias = true };

    private CausalLM Model(ScalarType dtype, double dropout)
    {
        var model = CausalLM.CreateRandom(Config, 5, new LoadOptions { Device = Dev, ComputeDtype = dtype });
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8, Dropout: dropout), seed: 3);
        using (no_grad())
            foreach (var (_, p) in model.LoraParameters()) p.normal_(0, 0.05);  // B = 0 would leave A without gradient
        model.train();
        return model;
    }

    private static (Tensor Hidden, double Loss, List<Tensor> Grads) Step(CausalLM model, Tensor ids, bool fused, bool checkpoint)
    {
        model.UseFusedKernels = fused;
        model.GradientCheckpointing = checkpoint;
        foreach (var (_, p) in model.LoraParameters()) p.grad = null;
        manual_seed(77);
        var hidden = model.Forward(ids);
        var t = ids.shape[1];
        var loss = FusedLinearCrossEntropy.Apply(hidden.narrow(1, 0, t - 1), model.LmHeadWeight, null, ids.narrow(1, 1, t - 1));
        loss.backward();
        return (hidden.detach(), loss.item<float>(), model.LoraParameters().Select(kv => kv.Value.grad!.clone()).ToList());
    }

    [TestCase(0.0, false)]
    [TestCase(0.25, false)]
    [TestCase(0.25, true)]
    public void Float32FusedEqualsReference(double dropout, bool checkpoint)
    {
        using var scope = NewDisposeScope();
        using var model = Model(ScalarType.Float32, dropout);
        var ids = randint(0, Config.VocabSize, [2, 24], generator: new Generator(9)).to(Dev);
        var reference = Step(model, ids, fused: false, checkpoint: false);
        var fused = Step(model, ids, fused: true, checkpoint);
        TestEnv.AssertClose(fused.Hidden, reference.Hidden, 1e-5, "hidden");
        Assert.That(fused.Loss, Is.EqualTo(reference.Loss).Within(1e-5));
        var names = model.LoraParameters().Select(kv => kv.Key).ToList();
        for (var i = 0; i < names.Count; i++) TestEnv.AssertClose(fused.Grads[i], reference.Grads[i], 1e-5, names[i]);
    }

    /// <summary>CausalLM.RecomputeAttention keeps q and the grouped k/v and runs SDPA again in backward: the same loss
    /// and LoRA gradients bit for bit (the tiny preset has 4 query heads over 2 KV heads), also inside checkpointed
    /// layers, whose backward runs the recomputing node's backward within its own.</summary>
    [TestCase(ScalarType.Float32, false)]
    [TestCase(ScalarType.Float32, true)]
    [TestCase(ScalarType.BFloat16, false)]
    public void RecomputedAttentionGivesTheSameBits(ScalarType dtype, bool checkpoint)
    {
        using var scope = NewDisposeScope();
        using var model = Model(dtype, 0.25);
        var ids = randint(0, Config.VocabSize, [2, 24], generator: new Generator(9)).to(Dev);
        var kept = Step(model, ids, fused: true, checkpoint);
        model.RecomputeAttention = true;
        var recomputed = Step(model, ids, fused: true, checkpoint);
        model.RecomputeAttention = false;
        Assert.That(recomputed.Loss, Is.EqualTo(kept.Loss));
        Assert.That(TestEnv.BitEqual(recomputed.Hidden, kept.Hidden), Is.True, "hidden");
        var names = model.LoraParameters().Select(kv => kv.Key).ToList();
        for (var i = 0; i < names.Count; i++) Assert.That(TestEnv.BitEqual(recomputed.Grads[i], kept.Grads[i]), Is.True, names[i]);
    }

    [Test]
    public void Bfloat16FusedMatchesReferenceWithinRounding()
    {
        using var scope = NewDisposeScope();
        using var model = Model(ScalarType.BFloat16, 0);
        var ids = randint(0, Config.VocabSize, [2, 24], generator: new Generator(9)).to(Dev);
        var reference = Step(model, ids, fused: false, checkpoint: false);
        var fused = Step(model, ids, fused: true, checkpoint: false);
        TestEnv.AssertClose(fused.Hidden, reference.Hidden, 2e-2, "hidden");
        Assert.That(fused.Loss, Is.EqualTo(reference.Loss).Within(2e-2 * Math.Abs(reference.Loss)));
        var names = model.LoraParameters().Select(kv => kv.Key).ToList();
        for (var i = 0; i < names.Count; i++) TestEnv.AssertClose(fused.Grads[i], reference.Grads[i], 5e-2, names[i]);
    }

    [Test]
    public void FusedInferenceWithTheCacheEqualsTheFullForward()
    {
        using var scope = NewDisposeScope();
        using var model = Model(ScalarType.Float32, 0);
        model.eval();
        using var noGrad = no_grad();
        var ids = randint(0, Config.VocabSize, [2, 10], generator: new Generator(4)).to(Dev);
        model.UseFusedKernels = false;
        var plain = model.Forward(ids);
        model.UseFusedKernels = true;
        var full = model.Forward(ids);
        using var cache = model.NewKvCache(2, 16);
        var stepwise = cat([model.Forward(ids[.., ..6], null, cache), model.Forward(ids[.., 6..], null, cache)], 1);
        TestEnv.AssertClose(full, plain, 1e-5, "fused vs plain");
        TestEnv.AssertClose(stepwise, full, 1e-5, "cache vs full");
    }

    [Test]
    public void CreateRandomIsSeededAndQuantized()
    {
        using var a = CausalLM.CreateRandom(Config, 1, new LoadOptions { Device = Dev });
        using var b = CausalLM.CreateRandom(Config, 1, new LoadOptions { Device = Dev });
        using var c = CausalLM.CreateRandom(Config, 2, new LoadOptions { Device = Dev });
        Assert.That(a.IsQuantized, Is.True);
        Assert.That(a.ComputeDtype, Is.EqualTo(DeviceName == "cpu" ? ScalarType.Float32 : ScalarType.BFloat16));
        var sa = a.state_dict();
        var sb = b.state_dict();
        var sc = c.state_dict();
        Assert.That(sa.Keys, Does.Contain("model.layers.0.self_attn.q_proj.weight.absmax"));
        Assert.That(sa.Keys, Does.Contain("model.layers.1.self_attn.q_proj.bias"));
        Assert.That(TestEnv.BitEqual(sa["model.embed_tokens.weight"], sb["model.embed_tokens.weight"]), Is.True);
        Assert.That(TestEnv.BitEqual(sa["model.layers.1.mlp.up_proj.weight"], sb["model.layers.1.mlp.up_proj.weight"]), Is.True);
        Assert.That(TestEnv.BitEqual(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"]), Is.False);
        var std = sa["model.embed_tokens.weight"].to(ScalarType.Float32).std().item<float>();
        Assert.That(std, Is.EqualTo(0.02).Within(0.002));
        Assert.Throws<ArgumentException>(() => CausalLM.CreateRandom(Config with { NumKeyValueHeads = 3 }, 1));
    }
}
