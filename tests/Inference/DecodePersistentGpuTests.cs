using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>The persistent decode step (<see cref="DecodeFusions.Persistent"/>) on CUDA: every family's architecture
/// (its config with the sizes changed to the kernel's head_dim 64 and 128, at 2 and 8 query heads per KV head; random
/// NF4 weights, bf16) gives the bits of the launch path at every step (eager, captured, replayed), over a cache long
/// enough for several attention splits; two launches a step; and shapes the kernel does not cover keep their launches
/// with the same bits.</summary>
[Category("Gpu")]
public class DecodePersistentGpuTests
{
    // The lane kernels: the persistent step is built from their code (the tensor-core GEMVs sum in another order).
    private static readonly DecodeEngineOptions Launches = new(Fusions: DecodeFusions.None, TensorCoreGemv: false);
    private static readonly DecodeEngineOptions Persistent = new(Fusions: DecodeFusions.Persistent);

    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    public static IEnumerable<TestCaseData> Shapes() =>
        from family in FamilyGolden.Families
        from headDim in new[] { 64, 128 }
        from heads in new[] { (4, 2), (8, 1) }
        select new TestCaseData(family, headDim, heads.Item1, heads.Item2);

    /// <summary>The family's golden config (its layers, windows, soft-caps, rope) with the persistent kernel's sizes:
    /// hidden = heads × head_dim, MLP 2 × hidden.</summary>
    internal static CausalLM RandomNf4(string family, int headDim, int heads, int kvHeads, long seed = 11)
    {
        var cfg = ModelConfig.Load(Path.Combine(FamilyGolden.Nf4(family), "config.json")) with
        {
            HeadDim = headDim, NumAttentionHeads = heads, NumKeyValueHeads = kvHeads, HiddenSize = heads * headDim,
            IntermediateSize = 2 * heads * headDim,
        };
        return CausalLM.CreateRandom(cfg, seed, new LoadOptions { Device = CUDA, ComputeDtype = ScalarType.BFloat16, Quantize = true });
    }

    [TestCaseSource(nameof(Shapes))]
    public void SameBitsAsTheLaunches(string family, int headDim, int heads, int kvHeads)
    {
        using var model = RandomNf4(family, headDim, heads, kvHeads);
        using (var cache = model.NewKvCache(1, 8))
        using (var engine = DecodeEngine.TryCreate(model, cache, out var whyNot, Persistent)!)
            Assert.That(engine.PersistentAvailable, Is.True, $"{family}: {whyNot}");
        DecodeLaunchModeGpuTests.AssertSameBits(model, [DecodeParity.ThreePrompts[0]], 40, Launches, Persistent);
    }

    /// <summary>A longer walk (about 150 keys: ten attention splits, merged) on a Qwen3 and a Mistral shape (the latter
    /// with its 9-token sliding window).</summary>
    [TestCase("qwen3", 128)]
    [TestCase("mistral", 64)]
    public void SameBitsOverALongerCache(string family, int headDim)
    {
        using var model = RandomNf4(family, headDim, 8, 2, seed: 5);
        DecodeLaunchModeGpuTests.AssertSameBits(model, [DecodeParity.ThreePrompts[0]], 140, Launches, Persistent);
    }

    [Test]
    public void TwoLaunchesAStepAndTheLaunchesElsewhere()
    {
        using var model = RandomNf4("qwen3", 128, 4, 2);
        using var noGrad = no_grad();
        foreach (var batch in new[] { 1, 2 })
        {
            using var cache = model.NewKvCache(batch, 32);
            using var engine = DecodeEngine.TryCreate(model, cache, out _, Persistent)!;
            Assert.That(engine.PersistentAvailable, Is.True);
            using (var scope = NewDisposeScope())
                model.Forward(tensor(new long[] { 1, 5, 9, 2, 6, 3 }).narrow(0, 0, 3 * batch).reshape(batch, 3).cuda(), null, cache);
            using var logits = engine.Step(full([batch], 7L, ScalarType.Int64, CUDA), full([batch], 3L, ScalarType.Int64, CUDA));
            // Batch 2 keeps the launches: 9 a layer, or 8 where the attention's walk and merge are one cluster launch
            // (kernels built from sm_90 PTX; this head_dim 128, 2 query heads per KV head, bf16 shape is the cluster
            // form's, round 30).
            var perLayer = CudaDevice.KernelArch() >= 900 ? 8 : 9;
            Assert.That(engine.KernelLaunches, Is.EqualTo(batch == 1 ? 2 : perLayer * model.Config.NumHiddenLayers + 4),
                        batch == 1 ? "batch 1: the persistent kernel and the LM head" : "batch 2 keeps the launches");
        }
    }

    /// <summary>Shapes the kernel does not cover (head_dim 16 of the golden tiny models, an unmerged adapter) report it
    /// unavailable and keep the launches' bits.</summary>
    [Test]
    public void UncoveredShapesKeepTheLaunches()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        using (var cache = model.NewKvCache(1, 8))
        using (var engine = DecodeEngine.TryCreate(model, cache, out _, Persistent)!)
            Assert.That(engine.PersistentAvailable, Is.False);
        // Without the persistent step the engine keeps its default GEMVs (the tensor-core ones where they fit).
        DecodeLaunchModeGpuTests.AssertSameBits(model, [DecodeParity.ThreePrompts[0]], 8, new DecodeEngineOptions(), Persistent);
    }
}
