using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Peft;

namespace SlothSharp.Tests.Inference;

/// <summary>The decode step's kernel fusions (<see cref="DecodeFusions"/>) on CUDA: every combination gives the bits
/// of none, step after step over graph replays, on the grouped kernels at batch 1 and 3 (a folded norm's prologue, the
/// attention's last-block merge against the separate combine kernel), with adapters for every family, on the GEMM path
/// past 8 rows (where no fusion applies), and after switching on a live engine.</summary>
[Category("Gpu")]
public class DecodeFusionGpuTests
{
    private static readonly DecodeEngineOptions None = new(Fusions: DecodeFusions.None);

    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    [TestCase(DecodeFusions.Norm)]
    [TestCase(DecodeFusions.AttentionMerge)]
    [TestCase(DecodeFusions.All)]
    public void SameBitsAsNoFusionOnTheGroupedKernels(DecodeFusions fusions)
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        DecodeLaunchModeGpuTests.AssertSameBits(model, [DecodeParity.ThreePrompts[0]], 24, None, new DecodeEngineOptions(Fusions: fusions));
        DecodeLaunchModeGpuTests.AssertSameBits(model, DecodeParity.ThreePrompts, 12, None, new DecodeEngineOptions(Fusions: fusions));
    }

    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void SameBitsAsNoFusionWithAdapter(string family)
    {
        using var model = DecodeParity.LoadCudaBf16(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        DecodeLaunchModeGpuTests.AssertSameBits(model, DecodeParity.ThreePrompts, 12, None, new DecodeEngineOptions(Fusions: DecodeFusions.All));
    }

    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void SameBitsAsNoFusionWithoutAdapter(string family)
    {
        using var model = DecodeParity.LoadCudaBf16(FamilyGolden.Nf4(family));
        DecodeLaunchModeGpuTests.AssertSameBits(model, DecodeParity.ThreePrompts, 12, None, new DecodeEngineOptions(Fusions: DecodeFusions.All));
    }

    [Test]
    public void SameBitsAsNoFusionOnTheGemmPath()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        DecodeLaunchModeGpuTests.AssertSameBits(model, DecodeParity.TwelvePrompts, 8,
                                                None, new DecodeEngineOptions(Fusions: DecodeFusions.All));
    }

    [Test]
    public void SwitchingOnALiveEngineRecapturesAndKeepsTheBits()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        using var noGrad = TorchSharp.torch.no_grad();
        using var cache = model.NewKvCache(1, 64);
        using var engine = DecodeEngine.TryCreate(model, cache, out _)!;
        Assert.That(engine.Fusions, Is.EqualTo(DecodeFusions.None));
        using var prompt = TorchSharp.torch.tensor(new long[] { 1, 5, 9 }).reshape(1, 3).cuda();
        var launches = new Dictionary<DecodeFusions, int>();
        TorchSharp.torch.Tensor? first = null;
        foreach (var f in new[] { DecodeFusions.None, DecodeFusions.All, DecodeFusions.Norm, DecodeFusions.AttentionMerge })
        {
            engine.SetFusions(f);
            // Three steps at the same position from the same prefilled cache: eager, capture, replay.
            for (var i = 0; i < 3; i++)
            {
                cache.Reset();
                using (var scope = TorchSharp.torch.NewDisposeScope()) model.Forward(prompt, null, cache);
                using var logits = engine.Step(TorchSharp.torch.tensor(new long[] { 7 }).cuda(), TorchSharp.torch.tensor(new long[] { 3 }).cuda());
                if (first is null) first = logits.clone();
                else Assert.That(logits.ne(first).sum().item<long>(), Is.Zero, $"{f}, step {i}");
            }
            launches[f] = engine.KernelLaunches;
        }
        first!.Dispose();
        var layers = model.Config.NumHiddenLayers;
        Assert.That(launches[DecodeFusions.None], Is.EqualTo(9 * layers + 4));
        Assert.That(launches[DecodeFusions.Norm], Is.EqualTo(7 * layers + 4));
        Assert.That(launches[DecodeFusions.AttentionMerge], Is.EqualTo(8 * layers + 4));
        Assert.That(launches[DecodeFusions.All], Is.EqualTo(6 * layers + 4));
    }
}
