using NUnit.Framework;
using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>What the layers of one forward share in a soft-capped (Gemma 2) model: one mask per kind of layer (the
/// causal one made once where no other is needed, the window where it bites) and one cache of its key spans, carried
/// through the tensors a checkpointed layer saves.</summary>
public class LayerContextTests
{
    private static readonly ModelConfig Gemma2 = ModelPresets.Tiny with
    {
        UnitOffsetNorms = true, SandwichNorms = true, Activation = GateActivation.GeluTanh, AttentionSoftcap = 50.0,
        NumHiddenLayers = 4, SlidingWindow = 3, SlidingLayers = new LayerPattern(Period: 2),
    };

    private static LayerContext Build(ModelConfig cfg, long t) =>
        LayerContext.Build(cfg, new Dictionary<RopeSpec, RotaryEmbedding>(), arange(t), t, null, null, 0, t, ScalarType.Float32, null);

    [Test]
    public void LayersOfOneKindShareTheirMaskAndSpans()
    {
        using var scope = NewDisposeScope();
        const long t = 6;
        var ctx = Build(Gemma2, t);
        var (local0, spans0) = ctx.SoftcapMaskOf(0);
        var (global1, spans1) = ctx.SoftcapMaskOf(1);
        var (local2, spans2) = ctx.SoftcapMaskOf(2);
        Assert.That(local2, Is.SameAs(local0));
        Assert.That(spans2, Is.SameAs(spans0));
        Assert.That(spans1, Is.Not.SameAs(spans0));
        var causal = LayerContext.CausalMask(t, t, CPU);
        Assert.That(TestEnv.BitEqual(global1!, causal), Is.True, "the plain causal mask where the window does not bite");
        var (window, _) = LayerContext.BuildMask(null, null, 3, 0, t, CPU);
        Assert.That(TestEnv.BitEqual(local0!, window!), Is.True, "the window's mask");

        var again = ctx.WithTensors(ctx.Tensors());
        Assert.That(TestEnv.BitEqual(again.SoftcapMaskOf(1).Allowed!, causal), Is.True, "carried by Tensors/WithTensors");
        Assert.That(TestEnv.BitEqual(again.SoftcapMaskOf(0).Allowed!, window!), Is.True);
        Assert.That(again.SoftcapMaskOf(0).Spans, Is.SameAs(spans0), "a recomputation shares the spans already read");
    }

    [Test]
    public void ModelsWithoutSoftCapsHaveNone()
    {
        using var scope = NewDisposeScope();
        var ctx = Build(ModelPresets.Tiny, 4);
        Assert.That(() => ctx.SoftcapMaskOf(0), Throws.InvalidOperationException);
        Assert.That(ctx.Tensors(), Is.Empty);
    }
}
