using NUnit.Framework;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The golden Llama checks on CUDA in bfloat16 (tolerances of bf16 activations).</summary>
[Category("Gpu")]
public class LlamaGpuTests
{
    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    private static (Tensor Ids, Tensor Mask) Inputs() =>
        (LlamaGolden.Read("input_ids").cuda(), LlamaGolden.Read("attention_mask").cuda());

    [Test]
    public void Nf4CheckpointInBf16()
    {
        using var scope = NewDisposeScope();
        using var model = LlamaForCausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA });
        Assert.That(model.ComputeDtype, Is.EqualTo(ScalarType.BFloat16));
        using var noGrad = no_grad();
        var (ids, mask) = Inputs();
        var logits = model.Logits(model.Forward(ids, mask)).cpu();
        var expected = LlamaGolden.Read("logits_base");
        var rel = TestEnv.RelativeError(logits, expected);
        var loss = LlamaGolden.ShiftedLoss(logits, LlamaGolden.Read("labels")).item<float>();
        TestContext.Out.WriteLine($"bf16 logits relative error {rel:E3}, max abs {LlamaGolden.MaxAbs(logits, expected):E3}; loss {loss}");
        Assert.That(rel, Is.LessThanOrEqualTo(3e-2));
        Assert.That(loss, Is.EqualTo(LlamaGolden.Expected("loss_base")).Within(2e-2));
    }

    [Test]
    public void DenseQuantizedOnGpuEqualsCpu()
    {
        using var gpu = LlamaForCausalLM.FromPretrained(LlamaGolden.DenseDir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.Float32 });
        using var cpu = LlamaForCausalLM.FromPretrained(LlamaGolden.DenseDir);
        var cpuState = cpu.state_dict();
        foreach (var (key, t) in gpu.state_dict())
            if (t.dtype == ScalarType.Byte && !key.Contains("quant_state"))
                Assert.That(TestEnv.BitEqual(t, cpuState[key]), Is.True, key);
    }

    [Test]
    public void LoraGradientsInBf16()
    {
        using var scope = NewDisposeScope();
        using var model = LlamaForCausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA });
        LlamaGolden.LoadGoldenAdapter(model);
        model.GradientCheckpointing = true;
        var (ids, mask) = Inputs();
        var logits = model.Logits(model.Forward(ids, mask));
        var loss = LlamaGolden.ShiftedLoss(logits, LlamaGolden.Read("labels"));
        Assert.That(loss.item<float>(), Is.EqualTo(LlamaGolden.Expected("loss_lora")).Within(2e-2));
        loss.backward();
        foreach (var (name, p) in model.LoraParameters())
            Assert.That(TestEnv.RelativeError(p.grad!, LlamaGolden.Read("grad.base_model.model." + name)), Is.LessThanOrEqualTo(5e-2), name);
    }

    [Test]
    public void KvCacheOnGpu()
    {
        using var scope = NewDisposeScope();
        using var model = LlamaForCausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.Float32 });
        using var noGrad = no_grad();
        var (ids, _) = Inputs();
        var full = model.Forward(ids);
        using var cache = model.NewKvCache(2, 43);
        var parts = new List<Tensor> { model.Forward(ids[.., ..10], null, cache) };
        for (var t = 10; t < 43; t++) parts.Add(model.Forward(ids[.., t..(t + 1)], null, cache));
        Assert.That(LlamaGolden.MaxAbs(cat(parts, 1), full), Is.LessThanOrEqualTo(1e-4));
    }
}
