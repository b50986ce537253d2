using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>Programmatic dependent launch is a CUDA mode: on the CPU the engine reports it off whatever is asked.</summary>
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
}
