using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using SlothSharp.Peft;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>Programmatic dependent launch (DecodeEngineOptions.ProgrammaticLaunch): on where the kernels carry the
/// grid-dependency wait (built from sm_90 PTX), off otherwise; and the same bits as plain launches, step after step,
/// over CUDA graph replays, for every family and at batch sizes of both GEMV paths. A missing wait (a kernel reading
/// its predecessor's output early) shows up here as different logits.</summary>
[Category("Gpu")]
public class DecodeLaunchModeGpuTests
{
    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    [Test]
    public void OnExactlyWhereTheKernelsSupportIt()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        using var cache = model.NewKvCache(1, 8);
        using var engine = DecodeEngine.TryCreate(model, cache, out _)!;
        var supported = CudaDevice.KernelArch() >= 900;
        Assert.That(engine.ProgrammaticLaunch, Is.EqualTo(supported));
        Assert.That(engine.SetProgrammaticLaunch(false), Is.False);
        Assert.That(engine.SetProgrammaticLaunch(true), Is.EqualTo(supported));
        using var off = DecodeEngine.TryCreate(model, cache, out _, new DecodeEngineOptions(ProgrammaticLaunch: false))!;
        Assert.That(off.ProgrammaticLaunch, Is.False);
    }

    [TestCaseSource(typeof(FamilyGolden), nameof(FamilyGolden.Families))]
    public void SameBitsAsPlainLaunchesWithAdapter(string family)
    {
        using var model = DecodeParity.LoadCudaBf16(FamilyGolden.Nf4(family));
        PeftAdapter.Load(model, FamilyGolden.Adapter(family));
        AssertSameBits(model, DecodeParity.ThreePrompts, 12);
    }

    [Test]
    public void SameBitsAsPlainLaunchesOnTheGroupedKernels()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        AssertSameBits(model, [DecodeParity.ThreePrompts[0]], 24);
        AssertSameBits(model, DecodeParity.ThreePrompts, 12);
    }

    [Test]
    public void SameBitsAsPlainLaunchesOnTheGemmPath()
    {
        using var model = DecodeParity.LoadCudaBf16(LlamaGolden.Nf4Dir);
        AssertSameBits(model, DecodeParity.TwelvePrompts, 8);
    }

    /// <summary>Two engines on two caches prefilled alike, one with each launch mode (or, given, each set of options),
    /// fed the same ids: logits equal bit for bit at every step (the first step of a size runs eagerly, the second
    /// captures, the rest replay).</summary>
    internal static void AssertSameBits(CausalLM model, long[][] prompts, int steps, DecodeEngineOptions? reference = null,
                                        DecodeEngineOptions? candidate = null)
    {
        reference ??= new DecodeEngineOptions(ProgrammaticLaunch: false);
        CompareSteps(model, prompts, steps, reference, candidate, (s, expected, actual) =>
        {
            var differing = actual.ne(expected).sum().item<long>();
            Assert.That(differing, Is.Zero,
                $"step {s}: {differing} logits differ (max |Δ| {(actual - expected).abs().max().item<float>()}) between {candidate ?? new DecodeEngineOptions()} and {reference}");
        });
    }

    /// <summary>Two engines (options <paramref name="reference"/> and <paramref name="candidate"/>) on two caches
    /// prefilled alike, fed the same ids, the reference's greedy ids after each step: check(step, reference logits,
    /// candidate logits) at every step.</summary>
    internal static void CompareSteps(CausalLM model, long[][] prompts, int steps, DecodeEngineOptions? reference,
                                      DecodeEngineOptions? candidate, Action<int, Tensor, Tensor> check)
    {
        using var noGrad = no_grad();
        var b = prompts.Length;
        var length = prompts.Max(p => p.Length) + steps + 1;
        using var refCache = model.NewKvCache(b, length);
        using var candCache = model.NewKvCache(b, length);
        using var refEngine = DecodeEngine.TryCreate(model, refCache, out _, reference)!;
        using var candEngine = DecodeEngine.TryCreate(model, candCache, out _, candidate)!;
        Tensor next;
        using (var scope = NewDisposeScope())
        {
            var (ids, mask) = DecodeParity.LeftPadded(prompts, model.Device);
            var h = model.Forward(ids, mask, refCache);
            model.Forward(ids, mask, candCache);
            next = model.Logits(h.narrow(1, h.shape[1] - 1, 1)).squeeze(1).argmax(-1).MoveToOuterDisposeScope();
        }
        for (var s = 0; s < steps; s++)
        {
            using var scope = NewDisposeScope();
            var positions = full([b], (long)refCache.Length, ScalarType.Int64, model.Device);
            var expected = refEngine.Step(next, positions).clone();
            var actual = candEngine.Step(next, positions);
            check(s, expected, actual);
            next.Dispose();
            next = expected.argmax(-1).MoveToOuterDisposeScope();
        }
        next.Dispose();
    }
}
