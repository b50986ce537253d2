using NUnit.Framework;
using SlothSharp.Inference;
using SlothSharp.Interop;
using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>DecodeEngineOptions.GemmTuning on the CPU: accepted and kept (the CPU never uses cuBLASLt), the same
/// tokens whatever the mode, and values outside GemmTuning refused by the engine and by the native export.</summary>
public class DecodeGemmTuningTests
{
    private static CausalLM TinyCpu() =>
        CausalLM.FromPretrained(LlamaGolden.Nf4Dir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32, Quantize = true });

    [Test]
    public void TheOptionIsKeptAndSetAgain()
    {
        using var model = TinyCpu();
        using var cache = model.NewKvCache(1, 8);
        using var engine = DecodeEngine.TryCreate(model, cache, out _, new DecodeEngineOptions(GemmTuning: GemmTuning.Wide))!;
        Assert.That(engine.GemmTuning, Is.EqualTo(GemmTuning.Wide));
        engine.SetGemmTuning(GemmTuning.None);
        Assert.That(engine.GemmTuning, Is.EqualTo(GemmTuning.None));
        Assert.That(new DecodeEngineOptions().GemmTuning, Is.EqualTo(GemmTuning.None), "the default");
    }

    [Test]
    public void ValuesOutsideTheEnumAreRefused()
    {
        using var model = TinyCpu();
        using var cache = model.NewKvCache(1, 8);
        using var engine = DecodeEngine.TryCreate(model, cache, out _)!;
        Assert.Throws<ArgumentOutOfRangeException>(() => engine.SetGemmTuning((GemmTuning)3));
        Assert.That(engine.GemmTuning, Is.EqualTo(GemmTuning.None), "unchanged by the refused call");
        Assert.That(Native.TryDecoderSetGemmTuning(0, 1), Is.EqualTo(SlothStatus.ErrorInvalidArgument), "a null decoder");
        // The value is checked before the decoder is touched (so a stand-in pointer never gets dereferenced).
        Assert.That(Native.TryDecoderSetGemmTuning(1, 7), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        Assert.That(Native.LastErrorMessage, Does.Contain("tune = 7 must be 0 (no tuning), 1 (heuristic) or 2 (wide)"));
    }

    [Test]
    public void SwitchingModesMidGenerationKeepsTheTokens()
    {
        using var model = TinyCpu();
        long[] Run(bool switchHalfway)
        {
            using var noGrad = no_grad();
            using var cache = model.NewKvCache(2, 40);
            using var engine = DecodeEngine.TryCreate(model, cache, out _)!;
            model.Forward(tensor(new long[] { 1, 5, 9, 1, 6, 10 }).reshape(2, 3), null, cache);
            var ids = tensor(new long[] { 7, 8 });
            var all = new List<long>();
            for (var s = 0; s < 12; s++)
            {
                if (switchHalfway && s == 6) engine.SetGemmTuning(GemmTuning.Wide);
                ids = engine.Step(ids, full([2], (long)cache.Length, ScalarType.Int64)).argmax(-1);
                all.AddRange(ids.data<long>().ToArray());
            }
            return all.ToArray();
        }
        Assert.That(Run(true), Is.EqualTo(Run(false)));
    }
}
