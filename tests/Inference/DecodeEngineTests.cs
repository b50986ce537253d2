using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using SlothSharp.Peft;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>The decoding engine on the CPU in float32 against CausalLM.Forward (the reference path of every family),
/// with the golden tiny checkpoints: NF4 and dense bases, the PEFT adapters unmerged, left padding, sliding windows
/// (gemma2 W = 7, gemma3, mistral W = 9: the 16+ steps run past them), soft-caps (gemma2), Q/K norms (qwen3, gemma3),
/// biases (qwen2), fused projections (phi3).</summary>
public class DecodeEngineTests
{
    private const double Tolerance = 1e-4;
    private static readonly long[][] OnePrompt = [[1, 5, 9, 13, 17, 21, 25]];
    [Test]
    public void LlamaNf4GreedyStepsMatchForward()
    {
        using var model = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
        DecodeParity.Run(model, OnePrompt, 20, Tolerance);
    }

    [Test]
    public void LlamaNf4WithUnmergedAdapterMatchesForward()
    {
        using var model = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
        PeftAdapter.Load(model, LlamaGolden.AdapterDir);
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 16, Tolerance);
    }

    [Test]
    public void LlamaDenseLeftPaddedBatchMatchesForward()
    {
        using var model = FamilyGolden.Load(LlamaGolden.DenseDir, quantize: false);
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 16, Tolerance);
    }

    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FamilyNf4WithAdapterMatchesForward(string family)
    {
        using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 18, Tolerance);
    }

    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FamilyNf4WithMergedAdapterMatchesForward(string family)
    {
        // The adapter folded into a dense copy of each projection (DecodeEngineOptions.MergeLora): the same function
        // up to float32 rounding of W + scale·B·A.
        using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 12, Tolerance, options: new DecodeEngineOptions(MergeLora: true));
    }

    [Test]
    public void MergedAdapterIsNotTheBaseAlone()
    {
        // The merge must carry the adapter: the base without it differs from the forward with it.
        using var model = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
        PeftAdapter.Load(model, LlamaGolden.AdapterDir);
        DecodeParity.Run(model, OnePrompt, 8, Tolerance, options: new DecodeEngineOptions(MergeLora: true));
        foreach (var p in model.Model.Layers.SelectMany(l => l.Projections))
            if (p.Lora is { } lora) Assert.That(lora.B.weight!.abs().max().item<float>(), Is.GreaterThan(0f), "the golden adapter has B != 0");
    }

    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FamilyDenseBaseMatchesForward(string family)
    {
        using var model = FamilyGolden.Load(FamilyGolden.Dense(family), quantize: false);
        DecodeParity.Run(model, OnePrompt, 16, Tolerance);
    }

    [TestCase("llama")]
    [TestCase("gemma2")]
    [TestCase("qwen3")]
    [TestCase("phi3")]
    public void Bf16OnTheCpuStaysCloseToForward(string family)
    {
        // The bf16 roundings of the CPU kernels (which the CUDA kernels mirror) against the bf16 reference forward:
        // sums are ordered differently, so logits agree to bf16 tolerances and greedy ids where the margin is clear.
        var dir = family == "llama" ? LlamaGolden.Nf4Dir : FamilyGolden.Nf4(family);
        using var model = CausalLM.FromPretrained(dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.BFloat16 });
        var worst = DecodeParity.Run(model, DecodeParity.ThreePrompts, 16, tolerance: 0.1, minMargin: 0.5);
        TestContext.Out.WriteLine($"{family}: worst |Δlogit| {worst}");
    }

    [Test]
    public void EngineFollowsTheCacheAfterAReset()
    {
        // A second generation in the same cache: the engine's device-side length must follow Reset + a new prefill.
        using var model = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
        using var noGrad = no_grad();
        using var cache = model.NewKvCache(1, 32);
        using var engine = DecodeEngine.TryCreate(model, cache, out _)!;
        var ids = tensor(new long[] { 1, 5, 9 }).reshape(1, 3);
        model.Forward(ids, null, cache);
        using var first = engine.Step(tensor(new long[] { 7 }), tensor(new long[] { 3 })).clone();
        engine.Step(tensor(new long[] { 8 }), tensor(new long[] { 4 }));
        cache.Reset();
        model.Forward(ids, null, cache);
        var again = engine.Step(tensor(new long[] { 7 }), tensor(new long[] { 3 }));
        Assert.That((again - first).abs().max().item<float>(), Is.LessThanOrEqualTo(1e-6f));
        Assert.That(cache.Length, Is.EqualTo(4));
        Assert.That(engine.GraphCaptures, Is.EqualTo(0), "no graphs on the CPU");
    }

    /// <summary>The launches of one step, which bound its speed at batch 1 (the arithmetic in decoder.cpp). With no
    /// fusion, NF4 layers without adapters take 9 each + 4 (q/k/v in one grouped GEMV; gate/up and the gated
    /// activation in one; both residual norms, qk_prep, the attention's partials and merge, o and down apart), also
    /// with phi3's fused projections (a one-member group) and qwen2's q/k/v biases; dense weights are not grouped (13
    /// each + 4); an adapter on all seven projections adds 2 launches per projection and keeps the activation apart
    /// (24 each + 4). DecodeFusions.Norm folds both norms into the grouped GEMVs (-2, also with adapters; not on dense
    /// weights), AttentionMerge the merge into the attention's last block (-1 everywhere).</summary>
    [TestCase(DecodeFusions.None)]
    [TestCase(DecodeFusions.Norm)]
    [TestCase(DecodeFusions.AttentionMerge)]
    [TestCase(DecodeFusions.All)]
    [TestCase(DecodeFusions.Persistent)]
    public void KernelLaunchesPerStepFollowTheGroupingAndFusions(DecodeFusions fusions)
    {
        var norm = fusions.HasFlag(DecodeFusions.Norm) ? 2 : 0;
        var merge = fusions.HasFlag(DecodeFusions.AttentionMerge) ? 1 : 0;
        Assert.That(LaunchesOfOneStep(LlamaGolden.LoadBase(LlamaGolden.Nf4Dir), null, 1, fusions), Is.EqualTo((9 - norm - merge) * 2 + 4));
        Assert.That(LaunchesOfOneStep(FamilyGolden.Load(FamilyGolden.Nf4("phi3")), null, 2, fusions), Is.EqualTo((9 - norm - merge) * 2 + 4));
        Assert.That(LaunchesOfOneStep(FamilyGolden.Load(FamilyGolden.Nf4("qwen2")), null, 1, fusions), Is.EqualTo((9 - norm - merge) * 2 + 4));
        Assert.That(LaunchesOfOneStep(FamilyGolden.Load(LlamaGolden.DenseDir, quantize: false), null, 1, fusions), Is.EqualTo((13 - merge) * 2 + 4));
        Assert.That(LaunchesOfOneStep(LlamaGolden.LoadBase(LlamaGolden.Nf4Dir), LlamaGolden.AdapterDir, 3, fusions), Is.EqualTo((24 - norm - merge) * 2 + 4));
    }

    /// <summary>Dense copies (DequantizeWeights; MergeLora for adapted projections) are stacked into the fused q/k/v
    /// and gate/up projections: per layer q/k/v 1, qk_prep 1, attention 2, o 1, gate/up 1, the activation 1, down 1,
    /// norms 2 = 10 (13 unstacked), whether the family stores them apart (Llama, Qwen2 with q/k/v biases) or fused
    /// (Phi-3). An adapter left unmerged keeps them apart (its own launches per member: 13 + 2 × 7).</summary>
    [Test]
    public void DenseCopiesRunAsStackedProjections()
    {
        var dq = new DecodeEngineOptions(DequantizeWeights: true);
        Assert.That(LaunchesOfOneStep(LlamaGolden.LoadBase(LlamaGolden.Nf4Dir), null, 1, DecodeFusions.None, dq), Is.EqualTo(10 * 2 + 4));
        Assert.That(LaunchesOfOneStep(FamilyGolden.Load(FamilyGolden.Nf4("qwen2")), null, 1, DecodeFusions.None, dq), Is.EqualTo(10 * 2 + 4));
        Assert.That(LaunchesOfOneStep(FamilyGolden.Load(FamilyGolden.Nf4("phi3")), null, 2, DecodeFusions.None, dq), Is.EqualTo(10 * 2 + 4));
        Assert.That(LaunchesOfOneStep(LlamaGolden.LoadBase(LlamaGolden.Nf4Dir), LlamaGolden.AdapterDir, 1, DecodeFusions.None, dq),
            Is.EqualTo((13 + 14) * 2 + 4));
        Assert.That(LaunchesOfOneStep(LlamaGolden.LoadBase(LlamaGolden.Nf4Dir), LlamaGolden.AdapterDir, 1, DecodeFusions.None, dq with { MergeLora = true }),
            Is.EqualTo(10 * 2 + 4));
    }

    /// <summary>The stacked copies compute the same function as the forward path on every family (without an adapter,
    /// and with it merged), and hold exactly one copy of every projection plus the stacked biases.</summary>
    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FamilyStackedDenseCopiesMatchForward(string family)
    {
        using (var model = FamilyGolden.Load(FamilyGolden.Nf4(family)))
        {
            var stackedBiases = model.Config.FusedQkv ? 0 : model.Model.Layers.Sum(l =>
                l.Attention.Projections.Take(3).Any(p => p.Bias is not null) ? l.Attention.Projections.Take(3).Sum(p => p.OutFeatures) : 0);
            Assert.That(DequantizedParityAndCopyBytes(model), Is.EqualTo((ProjectionWeights(model) + stackedBiases) * 4L),
                "one float32 copy of every projection, and the stacked biases");
        }
        using (var adapted = FamilyGolden.Load(FamilyGolden.Nf4(family)))
        {
            PeftAdapter.Load(adapted, FamilyGolden.Adapter(family));
            DecodeParity.Run(adapted, DecodeParity.ThreePrompts, 12, Tolerance,
                options: new DecodeEngineOptions(MergeLora: true, DequantizeWeights: true));
        }
    }

    private static int LaunchesOfOneStep(CausalLM model, string? adapter, int batch, DecodeFusions fusions, DecodeEngineOptions? options = null)
    {
        using var owned = model;
        if (adapter != null) PeftAdapter.Load(model, adapter);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var cache = model.NewKvCache(batch, 16);
        using var engine = DecodeEngine.TryCreate(model, cache, out var why, (options ?? new DecodeEngineOptions()) with { Fusions = fusions });
        Assert.That(why, Is.Null);
        Assert.That(engine!.KernelLaunches, Is.EqualTo(0), "before the first step");
        Assert.That(engine.Fusions, Is.EqualTo(fusions));
        model.Forward(full([batch, 3], 5L, ScalarType.Int64), null, cache);
        engine.Step(full([batch], 7L, ScalarType.Int64), full([batch], 3L, ScalarType.Int64));
        return engine.KernelLaunches;
    }

    /// <summary>The timing diagnostic: each omitted kernel class takes exactly its launches out of the step (two NF4
    /// layers: norms 2 per layer + the final one, q/k/v 1, qk_prep 1, attention 2, o 1, gate/up 1, down 1 per layer,
    /// the head 1); All leaves the embedding and the length increment; None gives the real step's logits again, bit
    /// for bit; unknown bits are refused.</summary>
    [Test]
    public void OmittedPartsTakeOutTheirLaunchesAndNoneRestoresTheStep()
    {
        using var model = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var cache = model.NewKvCache(1, 16);
        using var engine = DecodeEngine.TryCreate(model, cache, out var why)!;
        Assert.That(why, Is.Null);
        var ids = full([1, 3], 5L, ScalarType.Int64);
        Tensor Step(DecodeStepParts omit)
        {
            engine.SetOmittedParts(omit);
            cache.Reset();
            model.Forward(ids, null, cache);
            return engine.Step(full([1], 7L, ScalarType.Int64), full([1], 3L, ScalarType.Int64)).clone();
        }
        var real = Step(DecodeStepParts.None);
        var full9 = 9 * 2 + 4;
        Assert.That(engine.KernelLaunches, Is.EqualTo(full9));
        var expected = new Dictionary<DecodeStepParts, int>
        {
            [DecodeStepParts.Norm] = 2 * 2 + 1, [DecodeStepParts.Qkv] = 2, [DecodeStepParts.QkPrep] = 2,
            [DecodeStepParts.Attention] = 4, [DecodeStepParts.O] = 2, [DecodeStepParts.GateUp] = 2,
            [DecodeStepParts.Down] = 2, [DecodeStepParts.Head] = 1, [DecodeStepParts.All] = full9 - 2,
        };
        foreach (var (part, launches) in expected)
        {
            Step(part);
            Assert.That(engine.KernelLaunches, Is.EqualTo(full9 - launches), part.ToString());
            Assert.That(engine.OmittedParts, Is.EqualTo(part));
        }
        var again = Step(DecodeStepParts.None);
        Assert.That(again.equal(real).all().item<bool>(), Is.True, "None gives the real step back");
        Assert.Throws<ArgumentOutOfRangeException>(() => engine.SetOmittedParts((DecodeStepParts)256));
        foreach (var part in Enum.GetValues<DecodeStepParts>())  // the managed flags are the native ones
            Assert.That(Enum.GetName((SlothSharp.Interop.SlothDecodePart)(int)part), Is.EqualTo(part.ToString()));
    }

    /// <summary>On the CPU the fusions change the launch count only: the same logits, bit for bit, for every family
    /// with its adapter and without; unknown flags are refused.</summary>
    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FusionsGiveTheSameLogitsOnTheCpu(string family)
    {
        foreach (var adapter in new[] { false, true })
        {
            using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
            if (adapter) PeftAdapter.Load(model, FamilyGolden.Adapter(family));
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            Tensor Run(DecodeFusions f)
            {
                using var cache = model.NewKvCache(2, 16);
                using var engine = DecodeEngine.TryCreate(model, cache, out _, new DecodeEngineOptions(Fusions: f))!;
                model.Forward(tensor(new long[] { 1, 5, 9, 2, 6, 3 }).reshape(2, 3), null, cache);
                var first = engine.Step(tensor(new long[] { 7, 8 }), tensor(new long[] { 3, 3 })).clone();
                var second = engine.Step(tensor(new long[] { 4, 2 }), tensor(new long[] { 4, 4 }));
                return cat([first, second]);
            }
            var none = Run(DecodeFusions.None);
            foreach (var f in new[] { DecodeFusions.Norm, DecodeFusions.AttentionMerge, DecodeFusions.All })
                Assert.That(Run(f).ne(none).sum().item<long>(), Is.Zero, $"{family}, adapter {adapter}, {f}");
        }
        using var m = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
        using var c = m.NewKvCache(1, 8);
        using var e = DecodeEngine.TryCreate(m, c, out _)!;
        Assert.Throws<ArgumentOutOfRangeException>(() => e.SetFusions((DecodeFusions)8));
        Assert.That((int)DecodeFusions.Norm, Is.EqualTo((int)SlothSharp.Interop.SlothDecodeFusion.Norm));
        Assert.That((int)DecodeFusions.AttentionMerge, Is.EqualTo((int)SlothSharp.Interop.SlothDecodeFusion.AttentionMerge));
        Assert.That((int)DecodeFusions.Persistent, Is.EqualTo((int)SlothSharp.Interop.SlothDecodeFusion.Persistent));
        Assert.That((int)DecodeFusions.All, Is.EqualTo((int)SlothSharp.Interop.SlothDecodeFusion.All));
        // The persistent step is CUDA's: on the CPU it is never available, and the flag changes nothing (above: All).
        e.SetFusions(DecodeFusions.Persistent);
        Assert.That(e.PersistentAvailable, Is.False);
    }

    /// <summary>OwnedBytes counts what the engine allocated: at least the float32 logits [batch, vocab], and more with
    /// MergeLora (the merged dense copies of the adapted projections).</summary>
    [Test]
    public void OwnedBytesCountTheEngineBuffersAndMergedCopies()
    {
        using var model = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
        PeftAdapter.Load(model, LlamaGolden.AdapterDir);
        using var noGrad = no_grad();
        using var cache = model.NewKvCache(2, 16);
        using var plain = DecodeEngine.TryCreate(model, cache, out _)!;
        Assert.That(plain.OwnedBytes, Is.GreaterThanOrEqualTo(2L * model.Config.VocabSize * 4));
        using var merged = DecodeEngine.TryCreate(model, cache, out _, new DecodeEngineOptions(MergeLora: true))!;
        var denseBytes = model.Config.NumHiddenLayers * (long)model.Config.HiddenSize * model.Config.HiddenSize * 4;  // at least q and o per layer, float32
        Assert.That(merged.OwnedBytes, Is.GreaterThan(plain.OwnedBytes + denseBytes));
    }

    /// <summary>DequantizeWeights: every NF4 projection runs from a dense copy made once (the bits the engine's own
    /// dequantization gives), with the adapters unmerged: the same function, and the copies are really there.</summary>
    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FamilyNf4WithDequantizedWeightsMatchesForward(string family)
    {
        using var model = FamilyGolden.Load(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        Assert.That(DequantizedParityAndCopyBytes(model), Is.EqualTo(ProjectionWeights(model) * 4L), "one float32 copy of every projection");
    }

    /// <summary>Greedy parity of the engine with DequantizeWeights against the forward path, then the bytes the dense
    /// copies add to an engine (one with them against one without).</summary>
    private static long DequantizedParityAndCopyBytes(CausalLM model)
    {
        var options = new DecodeEngineOptions(DequantizeWeights: true);
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 12, Tolerance, options: options);
        using var noGrad = no_grad();
        using var cache = model.NewKvCache(1, 8);
        using var plain = DecodeEngine.TryCreate(model, cache, out _)!;
        using var dense = DecodeEngine.TryCreate(model, cache, out _, options)!;
        return dense.OwnedBytes - plain.OwnedBytes;
    }

    private static long ProjectionWeights(CausalLM model) =>
        model.Model.Layers.SelectMany(l => l.Projections).Sum(p => p.OutFeatures * p.InFeatures);

    [Test]
    public void StepRejectsBadInputs()
    {
        using var model = LlamaGolden.LoadBase(LlamaGolden.Nf4Dir);
        using var cache = model.NewKvCache(2, 8);
        using var engine = DecodeEngine.TryCreate(model, cache, out _)!;
        Assert.Throws<ArgumentException>(() => engine.Step(tensor(new long[] { 1, 2, 3 }), tensor(new long[] { 0, 0, 0 })));
        Assert.Throws<ArgumentException>(() => engine.Step(tensor(new[] { 1, 2 }), tensor(new long[] { 0, 0 })));
        Assert.Throws<ArgumentException>(() => engine.Step(tensor(new long[] { 1, 2 }), tensor(new long[] { 0 })));
        for (var i = 0; i < 8; i++) engine.Step(tensor(new long[] { 1, 2 }), tensor(new long[] { i, i }));
        Assert.Throws<InvalidOperationException>(() => engine.Step(tensor(new long[] { 1, 2 }), tensor(new long[] { 8, 8 })));
    }

    [Test]
    public void HeadDimBeyondTheKernelsIsRefused()
    {
        var cfg = ModelPresets.Tiny with { HeadDim = 512 };
        using var model = CausalLM.CreateRandom(cfg, 1, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = false });
        using var cache = model.NewKvCache(1, 8);
        Assert.That(DecodeEngine.TryCreate(model, cache, out var why), Is.Null);
        Assert.That(why, Does.Contain("head_dim 512"));
    }

    [Test]
    public void LongropeSwitchingInsideTheCacheIsRefused()
    {
        var cfg = ModelConfig.Load(Path.Combine(FamilyGolden.Dense("phi3"), "config.json"));
        var factors = Enumerable.Repeat(1.0, cfg.HeadDim / 2).ToArray();
        cfg = cfg with { Rope = new RopeSpec("longrope", 10000, OriginalMaxPositionEmbeddings: 64, AttentionFactor: 1.1, ShortFactor: factors, LongFactor: factors.Select(f => f * 2).ToArray()) };
        using var model = CausalLM.CreateRandom(cfg, 1, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 });
        using (var cache = model.NewKvCache(1, 128))
        {
            Assert.That(DecodeEngine.TryCreate(model, cache, out var why), Is.Null);
            Assert.That(why, Does.Contain("longrope"));
        }
        using (var cache = model.NewKvCache(1, 64))
        {
            using var engine = DecodeEngine.TryCreate(model, cache, out var why);
            Assert.That(why, Is.Null, "a cache within original_max_position_embeddings never switches");
            Assert.That(engine, Is.Not.Null);
        }
    }
}
