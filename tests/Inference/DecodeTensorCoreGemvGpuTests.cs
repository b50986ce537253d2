using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>The tensor-core NF4 GEMVs (<see cref="DecodeEngineOptions.TensorCoreGemv"/>, nf4_gemv_tiles.cuh) through
/// the engine, on models whose widths they take (multiples of 128: every family's architecture at hidden 512 and
/// 1024, random NF4 weights, bf16): the reference path's tokens and logits within bf16 tolerances, the lane kernels'
/// logits within the same, the folded norm and programmatic launch with the same bits as without, the persistent
/// step's engine on the lane kernels, and the switch itself.</summary>
[Category("Gpu")]
public class DecodeTensorCoreGemvGpuTests
{
    private static readonly DecodeEngineOptions Tiles = new(TensorCoreGemv: true);
    private static readonly DecodeEngineOptions Lanes = new(TensorCoreGemv: false);

    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    public static IEnumerable<TestCaseData> Shapes() =>
        from family in FamilyGolden.Families
        from headDim in new[] { 64, 128 }
        select new TestCaseData(family, headDim);

    [Test]
    public void TheSwitchIsAnOptionAndASetter()
    {
        using var model = DecodePersistentGpuTests.RandomNf4("qwen3", 128, 4, 2);
        using var cache = model.NewKvCache(1, 8);
        using var on = DecodeEngine.TryCreate(model, cache, out _)!;
        Assert.That(on.TensorCoreGemv, Is.True, "on by default");
        Assert.That(on.SetTensorCoreGemv(false), Is.False);
        Assert.That(on.SetTensorCoreGemv(true), Is.True);
        using var off = DecodeEngine.TryCreate(model, cache, out _, Lanes)!;
        Assert.That(off.TensorCoreGemv, Is.False);
    }

    /// <summary>hidden 4 × headDim (512: q/k/v, o, gate/up and down all on the tiles at head_dim 128) against
    /// CausalLM.Forward, at batch 1 (the grouped and gated tile kernels) and 3.</summary>
    [TestCaseSource(nameof(Shapes))]
    public void MatchesTheReferencePath(string family, int headDim)
    {
        using var model = DecodePersistentGpuTests.RandomNf4(family, headDim, 4, 2);
        DecodeParity.Run(model, [DecodeParity.ThreePrompts[0]], 24, tolerance: 0.25, minMargin: 0.5, options: Tiles);
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 16, tolerance: 0.25, minMargin: 0.5, options: Tiles);
    }

    /// <summary>The tiles and the lane kernels, step by step on the same ids: logits within bf16 tolerances of each other
    /// (they differ in the float32 summation order of every product, nothing else).</summary>
    [TestCaseSource(nameof(Shapes))]
    public void CloseToTheLaneKernels(string family, int headDim)
    {
        using var model = DecodePersistentGpuTests.RandomNf4(family, headDim, 8, 2);
        var anyDifferent = false;
        DecodeLaunchModeGpuTests.CompareSteps(model, DecodeParity.ThreePrompts, 16, Lanes, Tiles, (s, expected, actual) =>
        {
            var worst = (actual - expected).abs().max().item<float>();
            Assert.That(worst, Is.LessThanOrEqualTo(0.25), $"step {s}: max |Δlogit| {worst}");
            anyDifferent |= actual.ne(expected).any().item<bool>();
        });
        // Not a proof that the tiles ran, but a sign: another summation order changes some last bit in 16 steps. A
        // library built below sm_80 (the compute_75 build) runs the lane kernels either way.
        if (CudaDevice.KernelArch() >= 800)
            Assert.That(anyDifferent, Is.True, "the tensor-core GEMVs gave the lane kernels' bits: did they run?");
        else
            Assert.That(anyDifferent, Is.False, "below sm_80 the tiles fall back to the lane kernels");
    }

    /// <summary>On the tiles, the folded norm (DecodeFusions.Norm: its rows computed in the GEMV's shared memory) and
    /// programmatic launch (the tiles' weight prefetch before the grid-dependency wait) give the bits of the plain
    /// step.</summary>
    [TestCase("qwen3", 128)]
    [TestCase("gemma2", 64)]
    [TestCase("phi3", 128)]
    public void FusionsAndLaunchModesKeepTheBits(string family, int headDim)
    {
        using var model = DecodePersistentGpuTests.RandomNf4(family, headDim, 4, 2);
        var plain = new DecodeEngineOptions(ProgrammaticLaunch: false, TensorCoreGemv: true);
        DecodeLaunchModeGpuTests.AssertSameBits(model, DecodeParity.ThreePrompts, 12, plain, Tiles);
        // Not DecodeFusions.All: it holds Persistent, whose step (available on these shapes) is the lane kernels' code.
        DecodeLaunchModeGpuTests.AssertSameBits(model, [DecodeParity.ThreePrompts[0]], 12, Tiles,
            new DecodeEngineOptions(Fusions: DecodeFusions.Norm | DecodeFusions.AttentionMerge, TensorCoreGemv: true));
        DecodeLaunchModeGpuTests.AssertSameBits(model, DecodeParity.ThreePrompts, 12, Tiles,
            new DecodeEngineOptions(Fusions: DecodeFusions.Norm, TensorCoreGemv: true));
    }

    /// <summary>Where the persistent step runs, the engine's other batch sizes run the lane kernels too (its code):
    /// batch 2 of a Persistent engine has the bits of a lane-kernel engine, not those of the tiles.</summary>
    [Test]
    public void ThePersistentStepsEngineRunsTheLaneKernels()
    {
        using var model = DecodePersistentGpuTests.RandomNf4("qwen3", 128, 4, 2);
        var prompts = new[] { DecodeParity.ThreePrompts[0], DecodeParity.ThreePrompts[2] };
        DecodeLaunchModeGpuTests.AssertSameBits(model, prompts, 8, Lanes, new DecodeEngineOptions(Fusions: DecodeFusions.Persistent));
    }

    /// <summary>An MLP wider than 4096 (6144, Qwen3-1.7B's): the down projection's tiles run 16 warps a block, the
    /// gate/up 8; against the reference path and within bf16 tolerances of the lane kernels.</summary>
    [TestCase("qwen3")]
    [TestCase("gemma3")]
    public void WideDownProjection(string family)
    {
        var cfg = ModelConfig.Load(Path.Combine(FamilyGolden.Nf4(family), "config.json")) with
        {
            HeadDim = 128, NumAttentionHeads = 4, NumKeyValueHeads = 2, HiddenSize = 512, IntermediateSize = 6144,
        };
        using var model = CausalLM.CreateRandom(cfg, 3, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.BFloat16, Quantize = true });
        DecodeParity.Run(model, DecodeParity.ThreePrompts, 12, tolerance: 0.25, minMargin: 0.5, options: Tiles);
        DecodeParity.Run(model, [DecodeParity.ThreePrompts[1]], 12, tolerance: 0.25, minMargin: 0.5, options: Tiles);
    }
}
