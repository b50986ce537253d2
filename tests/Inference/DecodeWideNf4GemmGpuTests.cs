using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>The wide NF4 GEMM (cuda/nf4_gemm_wide.cu): past 8 rows the engine multiplies by the NF4 weights on tensor
/// cores instead of dequantizing each weight for cuBLASLt, where the tile GEMVs would take the shape (widths multiples
/// of 128: random NF4 models at hidden 512 and 1024, bf16). Against the reference path, and against the dequantized
/// GEMM (the engine with the tiles switched off), at batch 12 to 64 (the three n-tile counts), q/k/v as one launch,
/// gate/up as one gated launch, and with the columns split over blocks (the splits' sums added inside a thread-block
/// cluster at batch 9-16 on sm_90, else through a float32 scratch and a second launch) and not.</summary>
[Category("Gpu")]
public class DecodeWideNf4GemmGpuTests
{
    private static readonly DecodeEngineOptions Wide = new(TensorCoreGemv: true);
    private static readonly DecodeEngineOptions Dequantized = new(TensorCoreGemv: false);

    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    /// <summary>n prompts of 2 to 6 tokens, all different (left padding in every batch).</summary>
    private static long[][] Prompts(int n) =>
        Enumerable.Range(0, n).Select(i => Enumerable.Range(0, 2 + i % 5).Select(j => (long)(1 + (7 * i + 3 * j) % 97)).ToArray()).ToArray();

    public static IEnumerable<TestCaseData> Shapes() =>
        from family in FamilyGolden.Families
        from headDim in new[] { 64, 128 }
        select new TestCaseData(family, headDim);

    [TestCaseSource(nameof(Shapes))]
    public void MatchesTheReferencePathPastEightRows(string family, int headDim)
    {
        using var model = DecodePersistentGpuTests.RandomNf4(family, headDim, 4, 2);
        DecodeParity.Run(model, DecodeParity.TwelvePrompts, 10, tolerance: 0.25, minMargin: 0.5, options: Wide);
        DecodeParity.Run(model, Prompts(40), 6, tolerance: 0.25, minMargin: 0.5, options: Wide);
    }

    /// <summary>The wide GEMM and the dequantized weights' cuBLASLt GEMM, step by step on the same ids: logits within
    /// bf16 tolerances of each other, and not the same bits (a sign that the wide kernel ran: the two sum in other
    /// orders). Below sm_80 the wide kernel does not exist and the two are the same path.</summary>
    [TestCase("qwen3", 128, 12)]
    [TestCase("qwen2", 128, 20)]
    [TestCase("mistral", 64, 33)]  // the Llama layout (the family goldens hold no "llama": tests/data/hf-tiny-llama)
    [TestCase("gemma2", 64, 64)]
    public void CloseToTheDequantizedGemm(string family, int headDim, int batch)
    {
        using var model = DecodePersistentGpuTests.RandomNf4(family, headDim, 8, 2);
        var anyDifferent = false;
        DecodeLaunchModeGpuTests.CompareSteps(model, Prompts(batch), 8, Dequantized, Wide, (s, expected, actual) =>
        {
            var worst = (actual - expected).abs().max().item<float>();
            Assert.That(worst, Is.LessThanOrEqualTo(0.25), $"step {s}: max |Δlogit| {worst}");
            anyDifferent |= actual.ne(expected).any().item<bool>();
        });
        Assert.That(anyDifferent, Is.EqualTo(CudaDevice.KernelArch() >= 800), "wide kernel ran (sm_80+) or not");
    }

    /// <summary>Qwen3-1.7B's MLP width (6144: the down projection's k = 6144, its columns split over 16 blocks, the
    /// gate/up rows over 48 blocks of 128) at batch 64 against the reference path.</summary>
    [Test]
    public void QwenMlpWidthAtBatch64()
    {
        var cfg = ModelConfig.Load(Path.Combine(FamilyGolden.Nf4("qwen3"), "config.json")) with
        {
            HeadDim = 128, NumAttentionHeads = 4, NumKeyValueHeads = 2, HiddenSize = 512, IntermediateSize = 6144,
        };
        using var model = CausalLM.CreateRandom(cfg, 5, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.BFloat16, Quantize = true });
        DecodeParity.Run(model, Prompts(64), 4, tolerance: 0.25, minMargin: 0.5, options: Wide);
    }
}
