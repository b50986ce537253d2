using NUnit.Framework;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The Llama model against what transformers + bitsandbytes + PEFT computed on hf-tiny-llama (float32, CPU),
/// once with the fused kernels (the default) and once on the plain TorchSharp reference path.</summary>
[TestFixture(true)]
[TestFixture(false)]
public class LlamaGoldenTests(bool fused)
{
    private CausalLM Load(string dir, bool quantize = true)
    {
        var model = CausalLM.FromPretrained(dir, new LoadOptions { Quantize = quantize });
        model.UseFusedKernels = fused;
        return model;
    }

    private static Tensor Logits(CausalLM model)
    {
        var ids = LlamaGolden.Read("input_ids");
        var mask = LlamaGolden.Read("attention_mask");
        return model.Logits(model.Forward(ids, mask));
    }

    [Test]
    public void Nf4CheckpointGivesTransformersLogitsAndLoss()
    {
        using var scope = NewDisposeScope();
        using var model = Load(LlamaGolden.Nf4Dir);
        Assert.That(model.IsQuantized && model.ComputeDtype == ScalarType.Float32);
        using var noGrad = no_grad();
        var logits = Logits(model);
        var err = LlamaGolden.MaxAbs(logits, LlamaGolden.Read("logits_base"));
        TestContext.Out.WriteLine($"nf4 logits max abs error {err:E3}");
        Assert.That(err, Is.LessThanOrEqualTo(1e-4));
        var loss = LlamaGolden.ShiftedLoss(logits, LlamaGolden.Read("labels")).item<float>();
        TestContext.Out.WriteLine($"loss {loss} vs {LlamaGolden.Expected("loss_base")}");
        Assert.That(loss, Is.EqualTo(LlamaGolden.Expected("loss_base")).Within(1e-5));
    }

    [Test]
    public void DenseCheckpointQuantizedOnLoadMatchesTheBnbCheckpoint()
    {
        using var scope = NewDisposeScope();
        using var fromDense = Load(LlamaGolden.DenseDir);
        using var reader = new SafetensorsReader(Path.Combine(LlamaGolden.Nf4Dir, "model.safetensors"));
        long mismatched = 0, total = 0, absmaxMismatched = 0;
        foreach (var (key, t) in fromDense.state_dict())
        {
            if (!reader.Entries.ContainsKey(key)) continue;
            var golden = reader.Read(key);
            if (key.EndsWith("quant_state.bitsandbytes__nf4", StringComparison.Ordinal)) continue;
            Assert.That(t.shape, Is.EqualTo(golden.shape), key);
            if (t.dtype == ScalarType.Byte)
            {
                var diff = t.ne(golden).sum().item<long>();
                if (key.EndsWith(".absmax", StringComparison.Ordinal)) absmaxMismatched += diff;
                else { mismatched += diff; total += t.numel(); }
            }
        }
        TestContext.Out.WriteLine($"packed NF4 bytes differing from bitsandbytes: {mismatched} of {total}; absmax codes: {absmaxMismatched}");
        Assert.That(total, Is.GreaterThan(0));
        Assert.That(mismatched, Is.LessThanOrEqualTo(total / 1000), "packed bytes (ties aside)");
        using var noGrad = no_grad();
        var err = LlamaGolden.MaxAbs(Logits(fromDense), LlamaGolden.Read("logits_base"));
        TestContext.Out.WriteLine($"dense→NF4 logits max abs error {err:E3}");
        Assert.That(err, Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void StateDictKeysEqualTheCheckpointKeys()
    {
        foreach (var (dir, quantize) in new[] { (LlamaGolden.Nf4Dir, true), (LlamaGolden.DenseDir, false) })
        {
            using var model = Load(dir, quantize);
            using var reader = new SafetensorsReader(Path.Combine(dir, "model.safetensors"));
            var mine = model.state_dict().Keys.Order(StringComparer.Ordinal).ToArray();
            var theirs = reader.Entries.Keys.Order(StringComparer.Ordinal).ToArray();
            Assert.That(mine, Is.EqualTo(theirs), dir);
        }
    }

    [Test]
    public void Nf4CheckpointDequantizedIsTheSameModel()
    {
        using var scope = NewDisposeScope();
        using var dense = Load(LlamaGolden.Nf4Dir, quantize: false);
        Assert.That(dense.IsQuantized, Is.False);
        using var noGrad = no_grad();
        var err = LlamaGolden.MaxAbs(Logits(dense), LlamaGolden.Read("logits_base"));
        TestContext.Out.WriteLine($"nf4 dequantized to dense: logits max abs error {err:E3}");
        Assert.That(err, Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void LoraGivesPeftLogitsLossAndGradients()
    {
        using var scope = NewDisposeScope();
        using var model = Load(LlamaGolden.Nf4Dir);
        LlamaGolden.LoadGoldenAdapter(model);
        var logits = Logits(model);
        var err = LlamaGolden.MaxAbs(logits, LlamaGolden.Read("logits_lora"));
        TestContext.Out.WriteLine($"LoRA logits max abs error {err:E3}");
        Assert.That(err, Is.LessThanOrEqualTo(1e-4));
        var loss = LlamaGolden.ShiftedLoss(logits, LlamaGolden.Read("labels"));
        Assert.That(loss.item<float>(), Is.EqualTo(LlamaGolden.Expected("loss_lora")).Within(1e-5));
        loss.backward();
        var worst = 0.0;
        var lora = model.LoraParameters();
        Assert.That(lora, Has.Count.EqualTo(28));
        foreach (var (name, p) in lora)
        {
            Assert.That(p.grad, Is.Not.Null, name);
            var rel = TestEnv.RelativeError(p.grad!, LlamaGolden.Read("grad.base_model.model." + name));
            worst = Math.Max(worst, rel);
            Assert.That(rel, Is.LessThanOrEqualTo(1e-4), name);
        }
        TestContext.Out.WriteLine($"worst LoRA gradient relative error {worst:E3}");
        foreach (var (name, p) in model.named_parameters())
            Assert.That(p.requires_grad, Is.EqualTo(name.Contains(".lora_")), name);
    }

    [Test]
    public void MergedDenseWeightsGiveTheAdapterModelsLogits()
    {
        using var scope = NewDisposeScope();
        using var model = Load(LlamaGolden.Nf4Dir);
        LlamaGolden.LoadGoldenAdapter(model);
        var dir = LlamaGolden.CopyToTemp(LlamaGolden.DenseDir);
        try
        {
            var merged = model.MergedDenseWeights(ScalarType.Float32).ToList();
            SafetensorsWriter.Save(Path.Combine(dir, "model.safetensors"), merged);
            using var dense = Load(dir, quantize: false);
            using var noGrad = no_grad();
            var err = LlamaGolden.MaxAbs(Logits(dense), LlamaGolden.Read("logits_lora"));
            TestContext.Out.WriteLine($"merged dense logits max abs error vs PEFT {err:E3}");
            Assert.That(err, Is.LessThanOrEqualTo(1e-4));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [TestCase(0.0)]
    [TestCase(0.25)]
    public void GradientCheckpointingGivesTheSameGradients(double dropout)
    {
        using var scope = NewDisposeScope();
        using var model = Load(LlamaGolden.Nf4Dir);
        model.AddLora(new LoraConfig(Rank: 4, Alpha: 8, Dropout: dropout), seed: 3);
        using (no_grad())
            foreach (var (_, p) in model.LoraParameters()) p.normal_(0, 0.05);  // B = 0 would leave A without gradient
        model.train();
        var ids = LlamaGolden.Read("input_ids");
        var mask = LlamaGolden.Read("attention_mask");
        var labels = LlamaGolden.Read("labels");

        List<Tensor> Grads(bool checkpoint)
        {
            model.GradientCheckpointing = checkpoint;
            foreach (var (_, p) in model.LoraParameters()) p.grad = null;
            manual_seed(1234);
            var loss = LlamaGolden.ShiftedLoss(model.Logits(model.Forward(ids, mask)), labels);
            loss.backward();
            return model.LoraParameters().Select(kv => kv.Value.grad!.clone()).ToList();
        }

        var plain = Grads(false);
        var recomputed = Grads(true);
        for (var i = 0; i < plain.Count; i++)
            Assert.That(TestEnv.RelativeError(recomputed[i], plain[i]), Is.LessThanOrEqualTo(1e-6), model.LoraParameters()[i].Key);
        if (dropout > 0)
        {
            model.eval();
            model.GradientCheckpointing = false;
            foreach (var (_, p) in model.LoraParameters()) p.grad = null;
            LlamaGolden.ShiftedLoss(model.Logits(model.Forward(ids, mask)), labels).backward();
            Assert.That(TestEnv.RelativeError(model.LoraParameters()[0].Value.grad!, plain[0]), Is.GreaterThan(1e-3),
                "dropout had no effect in train mode");
        }
    }

    [Test]
    public void KvCacheForwardEqualsTheFullForward()
    {
        using var scope = NewDisposeScope();
        using var model = Load(LlamaGolden.Nf4Dir);
        using var noGrad = no_grad();
        var ids = LlamaGolden.Read("input_ids");
        var full = model.Forward(ids);
        using var cache = model.NewKvCache(2, 64);
        var parts = new List<Tensor> { model.Forward(ids[.., ..20], null, cache) };
        Assert.That(cache.Length, Is.EqualTo(20));
        for (var t = 20; t < 43; t++) parts.Add(model.Forward(ids[.., t..(t + 1)], null, cache));
        var stepwise = cat(parts, 1);
        var err = LlamaGolden.MaxAbs(stepwise, full);
        TestContext.Out.WriteLine($"KV-cache hidden states max abs difference {err:E3}");
        Assert.That(err, Is.LessThanOrEqualTo(1e-5));

        // A padded batch: the cache remembers which cached positions are padding.
        var mask = LlamaGolden.Read("attention_mask");
        var fullPadded = model.Forward(ids, mask);
        cache.Reset();
        var first = model.Forward(ids[.., ..30], mask[.., ..30], cache);
        var rest = model.Forward(ids[.., 30..], mask, cache);
        Assert.That(LlamaGolden.MaxAbs(cat([first, rest], 1), fullPadded), Is.LessThanOrEqualTo(1e-5));
    }

    [Test]
    public void ThreeAdamWStepsThenGreedyGenerationWithTheCache()
    {
        using var scope = NewDisposeScope();
        using var model = Load(LlamaGolden.Nf4Dir);
        LlamaGolden.LoadGoldenAdapter(model);
        model.train();
        var ids = LlamaGolden.Read("input_ids");
        var mask = LlamaGolden.Read("attention_mask");
        var labels = LlamaGolden.Read("labels");
        var json = LlamaGolden.ExpectedJson;
        var expectedLosses = json["adamw_losses"]!.AsArray().Select(n => n!.GetValue<double>()).ToArray();
        using var opt = optim.AdamW(model.LoraParameters().Select(kv => kv.Value), lr: 1e-2, beta1: 0.9, beta2: 0.999,
            eps: 1e-8, weight_decay: 0.01);
        for (var step = 0; step < 3; step++)
        {
            opt.zero_grad();
            var loss = LlamaGolden.ShiftedLoss(model.Logits(model.Forward(ids, mask)), labels);
            Assert.That(loss.item<float>(), Is.EqualTo(expectedLosses[step]).Within(1e-4), $"loss before step {step + 1}");
            loss.backward();
            opt.step();
        }
        model.eval();
        using var noGrad = no_grad();
        var after = LlamaGolden.ShiftedLoss(model.Logits(model.Forward(ids, mask)), labels).item<float>();
        Assert.That(after, Is.EqualTo(LlamaGolden.Expected("loss_after_3_steps")).Within(1e-4));

        var prompt = json["generate_prompt_ids"]!.AsArray().Select(n => n!.GetValue<long>()).ToArray();
        var expected = json["generate_ids"]!.AsArray().Select(n => n!.GetValue<long>()).ToArray();
        var margins = json["generate_top2_margins"]!.AsArray().Select(n => n!.GetValue<double>()).ToArray();
        using var cache = model.NewKvCache(1, expected.Length);
        var next = tensor(prompt, ScalarType.Int64).unsqueeze(0);
        var generated = prompt.ToList();
        for (var i = 0; i < expected.Length - prompt.Length; i++)
        {
            var logits = model.Logits(model.Forward(next, null, cache))[0, -1];
            var token = logits.argmax().item<long>();
            generated.Add(token);
            if (margins[i] > 1e-3) Assert.That(token, Is.EqualTo(expected[prompt.Length + i]), $"token {i} (margin {margins[i]})");
            next = tensor(new[] { token }, ScalarType.Int64).unsqueeze(0);
        }
        TestContext.Out.WriteLine($"generated {string.Join(" ", generated)}");
    }

    [Test]
    public void LeftPaddingCannotProduceNaN()
    {
        using var scope = NewDisposeScope();
        using var model = Load(LlamaGolden.Nf4Dir);
        using var noGrad = no_grad();
        var ids = LlamaGolden.Read("input_ids")[.., ..12];
        var mask = ones([2, 12], ScalarType.Int64);
        mask[1, ..5] = tensor(0L);  // row 2: five padding tokens on the left, so its first queries see no real key
        var hidden = model.Forward(ids, mask);
        Assert.That(hidden.isfinite().all().item<bool>(), Is.True);
        // Row 1 is unaffected by row 2's padding.
        Assert.That(LlamaGolden.MaxAbs(hidden[0], model.Forward(ids[..1])[0]), Is.LessThanOrEqualTo(1e-5));
    }

    [Test]
    public void WrittenCheckpointsLoadDenseBnbAndSharded()
    {
        using var scope = NewDisposeScope();
        var root = Path.Combine(Path.GetTempPath(), "sloth-llama-" + Guid.NewGuid().ToString("N"));
        try
        {
            var cfg = ModelPresets.Tiny with { TieWordEmbeddings = false, QkvBias = true, OutputBias = true };
            var dense = Path.Combine(root, "dense");
            var bnb = Path.Combine(root, "bnb");
            var sharded = Path.Combine(root, "sharded");
            CheckpointWriter.WriteRandom(dense, cfg, 7, bnb4bit: false, Path.Combine(LlamaGolden.DenseDir, "tokenizer.json"));
            CheckpointWriter.WriteRandom(bnb, cfg, 7, bnb4bit: true);
            CheckpointWriter.WriteRandom(sharded, cfg, 7, bnb4bit: false, null, shardBytes: 20_000);
            Assert.That(File.Exists(Path.Combine(dense, "tokenizer.json")) && File.Exists(Path.Combine(dense, "generation_config.json")));
            Assert.That(File.Exists(Path.Combine(sharded, "model.safetensors.index.json")));
            Assert.That(Directory.GetFiles(sharded, "model-*-of-*.safetensors").Length, Is.GreaterThan(1));
            Assert.That(Directory.GetDirectories(root), Has.Length.EqualTo(3), "no temporary directories left");

            using var a = CausalLM.FromPretrained(dense);
            using var b = CausalLM.FromPretrained(bnb);
            using var c = CausalLM.FromPretrained(sharded);
            Assert.That(a.Config with { }, Is.Not.Null);
            Assert.That(a.Config.TieWordEmbeddings, Is.False);
            using var reader = new SafetensorsReader(Path.Combine(bnb, "model.safetensors"));
            Assert.That(b.state_dict().Keys.Order(StringComparer.Ordinal), Is.EqualTo(reader.Entries.Keys.Order(StringComparer.Ordinal)));
            using var noGrad = no_grad();
            var ids = randint(0, cfg.VocabSize, [2, 12], ScalarType.Int64);
            var la = a.Logits(a.Forward(ids));
            Assert.That(LlamaGolden.MaxAbs(b.Logits(b.Forward(ids)), la), Is.EqualTo(0.0), "bnb file = the dense file quantized on load");
            Assert.That(LlamaGolden.MaxAbs(c.Logits(c.Forward(ids)), la), Is.EqualTo(0.0), "sharded = single file");
            Assert.That(la.isfinite().all().item<bool>());
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, true);
        }
    }
}
