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
        using var model = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA });
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
        using var gpu = CausalLM.FromPretrained(LlamaGolden.DenseDir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.Float32 });
        using var cpu = CausalLM.FromPretrained(LlamaGolden.DenseDir);
        var cpuState = cpu.state_dict();
        foreach (var (key, t) in gpu.state_dict())
            if (t.dtype == ScalarType.Byte && !key.Contains("quant_state"))
                Assert.That(TestEnv.BitEqual(t, cpuState[key]), Is.True, key);
    }

    [Test]
    public void LoraGradientsInBf16()
    {
        using var scope = NewDisposeScope();
        using var model = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA });
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
        using var model = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.Float32 });
        using var noGrad = no_grad();
        var (ids, _) = Inputs();
        var full = model.Forward(ids);
        using var cache = model.NewKvCache(2, 43);
        var parts = new List<Tensor> { model.Forward(ids[.., ..10], null, cache) };
        for (var t = 10; t < 43; t++) parts.Add(model.Forward(ids[.., t..(t + 1)], null, cache));
        Assert.That(LlamaGolden.MaxAbs(cat(parts, 1), full), Is.LessThanOrEqualTo(1e-4));
    }
    [Test]
    public void GradientCheckpointingWithDropoutOnGpu()
    {
        using var scope = NewDisposeScope();
        using var model = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.Float32 });
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8, Dropout: 0.2), seed: 5);
        using (no_grad())
            foreach (var (_, p) in model.LoraParameters()) p.normal_(0, 0.05);
        model.train();
        var (ids, mask) = Inputs();
        var labels = LlamaGolden.Read("labels");
        List<Tensor> Grads(bool checkpoint)
        {
            model.GradientCheckpointing = checkpoint;
            foreach (var (_, p) in model.LoraParameters()) p.grad = null;
            manual_seed(99);
            LlamaGolden.ShiftedLoss(model.Logits(model.Forward(ids, mask)), labels).backward();
            return model.LoraParameters().Select(kv => kv.Value.grad!.cpu()).ToList();
        }
        var plain = Grads(false);
        var recomputed = Grads(true);
        for (var i = 0; i < plain.Count; i++)
            Assert.That(TestEnv.RelativeError(recomputed[i], plain[i]), Is.LessThanOrEqualTo(1e-4), model.LoraParameters()[i].Key);
    }

    /// <summary>The "done when" shape: a Llama-3.2-1B-shaped checkpoint (random weights) written dense (sharded,
    /// 2.5 GB) and bnb-4bit, loaded both ways on the GPU; prints load time, forward tokens/s and cached greedy
    /// tokens/s. Explicit: about a minute and 4 GB of disk.</summary>
    [Test, Explicit("writes 3.5 GB; run for the benchmark")]
    public void Llama32_1BShapedCheckpoints()
    {
        var root = Path.Combine(Path.GetTempPath(), "sloth-1b-" + Guid.NewGuid().ToString("N"));
        try
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            CheckpointWriter.WriteRandom(Path.Combine(root, "dense"), ModelPresets.Llama32_1B, 0, bnb4bit: false);
            CheckpointWriter.WriteRandom(Path.Combine(root, "bnb"), ModelPresets.Llama32_1B, 0, bnb4bit: true);
            TestContext.Out.WriteLine($"wrote both checkpoints in {sw.Elapsed.TotalSeconds:F1} s");
            Assert.That(File.Exists(Path.Combine(root, "dense", "model.safetensors.index.json")), "2.5 GB dense is sharded");
            foreach (var kind in new[] { "dense", "bnb" })
            {
                using var scope = NewDisposeScope();
                sw.Restart();
                using var model = CausalLM.FromPretrained(Path.Combine(root, kind), new LoadOptions { Device = CUDA });
                cuda.synchronize();
                var load = sw.Elapsed.TotalSeconds;
                using var noGrad = no_grad();
                var ids = randint(0, 128256, [8, 1024], ScalarType.Int64, CUDA);
                model.Forward(ids).Dispose();
                cuda.synchronize();
                sw.Restart();
                for (var i = 0; i < 3; i++) model.Forward(ids).Dispose();
                cuda.synchronize();
                var fwd = 3 * 8 * 1024 / sw.Elapsed.TotalSeconds;
                using var cache = model.NewKvCache(1, 160);
                var next = ids[..1, ..32];
                model.Forward(next, null, cache);
                sw.Restart();
                for (var i = 0; i < 128; i++)
                {
                    var h = model.Forward(next, null, cache);
                    next = model.Logits(h[.., -1..]).argmax(-1);
                }
                cuda.synchronize();
                var gen = 128 / sw.Elapsed.TotalSeconds;
                TestContext.Out.WriteLine($"{kind}: load {load:F1} s, forward {fwd:F0} tokens/s (8 x 1024), greedy {gen:F1} tokens/s (batch 1, KV cache)");
                Assert.That(model.IsQuantized);
            }
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, true);
        }
    }
}
