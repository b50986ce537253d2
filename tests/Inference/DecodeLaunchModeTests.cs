using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>Programmatic dependent launch and the tensor-core NF4 GEMVs are CUDA modes: on the CPU the engine reports
/// them off whatever is asked, and its logits do not depend on the request.</summary>
public class DecodeLaunchModeTests
{
    [Test]
    public void OffOnTheCpu()
    {
        using var model = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = true });
        using var cache = model.NewKvCache(1, 8);
        using var engine = DecodeEngine.TryCreate(model, cache, out _, new DecodeEngineOptions(ProgrammaticLaunch: true))!;
        Assert.That(engine.ProgrammaticLaunch, Is.False);
        Assert.That(engine.SetProgrammaticLaunch(true), Is.False);
    }

    [Test]
    public void TensorCoreGemvOffOnTheCpu()
    {
        using var model = CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = true });
        using var noGrad = no_grad();
        using var cacheA = model.NewKvCache(1, 8);
        using var cacheB = model.NewKvCache(1, 8);
        using var asked = DecodeEngine.TryCreate(model, cacheA, out _, new DecodeEngineOptions(TensorCoreGemv: true))!;
        using var not = DecodeEngine.TryCreate(model, cacheB, out _, new DecodeEngineOptions(TensorCoreGemv: false))!;
        Assert.That(asked.TensorCoreGemv, Is.False);
        Assert.That(asked.SetTensorCoreGemv(true), Is.False);
        using var ids = tensor(new long[] { 7 });
        using var positions = tensor(new long[] { 0 });
        using var a = asked.Step(ids, positions).clone();
        using var b = not.Step(ids, positions);
        Assert.That(TestEnv.BitEqual(a, b), Is.True);
    }
}
