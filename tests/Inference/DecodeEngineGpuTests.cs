using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using SlothSharp.Ops;
using SlothSharp.Peft;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>The decoding engine on CUDA in bfloat16 (kernels + CUDA graphs) against CausalLM.Forward: logits within
/// bf16 tolerances and greedy ids equal where the reference's top-2 margin is large; one graph capture per batch
/// size.</summary>
[Category("Gpu")]
public class DecodeEngineGpuTests
{
    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    [Test, Category("Sanitize")]
    public void LlamaNf4WithAdapterInBf16()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        PeftAdapter.Load(model, LlamaGolden.AdapterDir);
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 24, tolerance: 0.25, minMargin: 0.5);
    }

    /// <summary>Without an adapter the decoder takes the gated NF4 GEMV (gate/up and the activation in one launch) and
    /// the grouped q/k/v launch: 9 launches per layer + 4 with no fusion (the default), 6 with all.</summary>
    [Test, Category("Sanitize")]
    public void LlamaNf4WithoutAdapterUsesTheGroupedKernelsInBf16()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 24, tolerance: 0.25, minMargin: 0.5);
        using var noGrad = no_grad();
        using var cache = model.NewKvCache(1, 16);
        using var engine = DecodeEngine.TryCreate(model, cache, out _)!;
        model.Forward(tensor(new long[] { 1, 5, 9 }).reshape(1, 3).cuda(), null, cache);
        engine.Step(tensor(new long[] { 7 }).cuda(), tensor(new long[] { 3 }).cuda());
        Assert.That(engine.KernelLaunches, Is.EqualTo(9 * model.Config.NumHiddenLayers + 4));
    }

    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FamilyNf4WithAdapterInBf16(string family)
    {
        using var model = DecodeParity.LoadCudaBf16(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 20, tolerance: 0.25, minMargin: 0.5);
    }

    [Test]
    public void LargeBatchUsesTheGemmPathInBf16()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        DecodeParity.Run(model, DecodeParity.TwelvePrompts, 8, tolerance: 0.25, minMargin: 0.5);
    }

    /// <summary>Every family past 8 rows: the GEMM path, where separate q/k/v projections are dequantized one under
    /// the other into one GEMM (biases, as Qwen 2's, added after it) and fused ones keep their own.</summary>
    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FamilyNf4OnTheGemmPathInBf16(string family)
    {
        using var model = DecodeParity.LoadCudaBf16(FamilyGolden.Nf4(family));
        DecodeParity.Run(model, DecodeParity.TwelvePrompts, 8, tolerance: 0.25, minMargin: 0.5);
    }

    /// <summary>Every family past 8 rows from dense copies (DequantizeWeights): q/k/v and gate/up stacked into one
    /// cuBLASLt GEMM each, biases in the stacked bias.</summary>
    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void FamilyStackedDenseCopiesOnTheGemmPathInBf16(string family)
    {
        using var model = DecodeParity.LoadCudaBf16(FamilyGolden.Nf4(family));
        DecodeParity.Run(model, DecodeParity.TwelvePrompts, 8, tolerance: 0.25, minMargin: 0.5,
            options: new DecodeEngineOptions(DequantizeWeights: true));
    }

    /// <summary>GemmTuning: the first step of batch 12 runs eagerly, then its cuBLASLt GEMM shapes are tuned (the tuner's
    /// report lists them with their candidates), and the tokens still match the reference path.</summary>
    [Test]
    public void GemmTuningTunesTheStepsShapesBeforeTheCapture()
    {
        using var model = DecodeParity.LoadCudaBf16(FamilyGolden.Nf4("qwen3"));
        DecodeParity.Run(model, DecodeParity.TwelvePrompts, 8, tolerance: 0.25, minMargin: 0.5,
            options: new DecodeEngineOptions(DequantizeWeights: true, GemmTuning: GemmTuning.Wide));
        var report = TunedGemm.TuningReport();
        var lines = report.Split('\n').Where(l => l.Contains(" m=12 ")).ToArray();
        Assert.That(lines, Is.Not.Empty, report);
        Assert.That(lines.Any(l => l.Contains("candidates")), report);
    }

    [Test]
    public void OneGraphCaptureFor64StepsAtOneBatchSize()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        using var noGrad = no_grad();
        using var cache = model.NewKvCache(2, 80);
        using var engine = DecodeEngine.TryCreate(model, cache, out var why);
        Assert.That(why, Is.Null);
        model.Forward(tensor(new long[] { 1, 5, 9, 1, 6, 10 }).reshape(2, 3).cuda(), null, cache);
        var ids = tensor(new long[] { 7, 8 }).cuda();
        for (var s = 0; s < 64; s++)
        {
            using var scope = NewDisposeScope();
            var positions = full([2], (long)cache.Length, ScalarType.Int64, model.Device);
            ids = engine!.Step(ids, positions).argmax(-1).MoveToOuterDisposeScope();
        }
        Assert.That(engine!.GraphCaptures, Is.EqualTo(1));
        Assert.That(cache.Length, Is.EqualTo(67));
    }
}
