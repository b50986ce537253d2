using SlothSharp.References;
using NUnit.Framework;
using SlothSharp.Losses;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>GRPO against a naive implementation with full logits and ordinary autograd.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class GrpoTests(string deviceName) : DeviceFixture(deviceName)
{
    [Test]
    public void MatchesNaiveForEveryNormalization([Values] GrpoNormalization norm, [Values] bool fused)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(31);
        const long B = 3, T = 11, H = 16, V = 97;
        var h = randn([B, T, H], generator: gen).to(Dev).requires_grad_();
        var w = (randn([V, H], generator: gen) * 0.3).to(Dev).requires_grad_();
        var ids = randint(0, V, [B, T], generator: gen).to(Dev);
        var mask = rand([B, T], generator: gen).gt(0.25).to(Dev);
        mask[1] = zeros(T, ScalarType.Bool, Dev);  // a sequence with no completion tokens
        var adv = randn([B], generator: gen).to(Dev);
        var old = (randn([B, T], generator: gen) * 0.1 - 4.5).to(Dev);
        var reff = (randn([B, T], generator: gen) * 0.1 - 4.5).to(Dev);
        var o = new GrpoOptions
        {
            Normalization = norm, Beta = 0.04, EpsilonLow = 0.2, EpsilonHigh = 0.28, Temperature = 0.9, UseFusedKernel = fused,
            GlobalNormalizer = norm == GrpoNormalization.Dapo ? 40 : null, MaxCompletionLength = norm == GrpoNormalization.DrGrpo ? 16 : null,
            ChunkRows = 5,
        };
        var expected = GrpoReference.Loss(h, w, ids, mask, adv, old, reff, o);
        expected.backward();
        var (eh, ew) = (LossReference.Grad(h)!, LossReference.Grad(w)!);
        LossReference.ZeroGrads(h, w);
        using var result = GrpoLoss.Compute(h, w, null, ids, mask, adv, old, reff, o);
        result.Loss.backward();
        TestEnv.AssertClose(result.Loss, expected, 1e-5, $"loss {norm}");
        TestEnv.AssertClose(h.grad!, eh, 1e-5, "d hidden");
        TestEnv.AssertClose(w.grad!, ew, 1e-5, "d weight");
        Assert.That(result.ClipFraction.item<float>(), Is.InRange(0f, 1f));
        Assert.That(result.MeanKl.item<float>(), Is.GreaterThanOrEqualTo(0f));
    }

    [Test]
    public void DefaultOldLogProbsAreTheDetachedCurrentOnes()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(32);
        var h = randn([2, 5, 8], generator: gen).to(Dev).requires_grad_();
        var w = randn([30, 8], generator: gen).to(Dev).requires_grad_();
        var ids = randint(0, 30, [2, 5], generator: gen).to(Dev);
        var mask = ones([2, 5], ScalarType.Bool, Dev);
        var adv = tensor(new[] { 1.0f, -0.5f }).to(Dev);
        using var r = GrpoLoss.Compute(h, w, null, ids, mask, adv);
        // ratio = 1 everywhere: loss = -mean(A) per sequence, no clipping.
        Assert.That(r.Loss.item<float>(), Is.EqualTo(-0.25f).Within(1e-6));
        Assert.That(r.ClipFraction.item<float>(), Is.EqualTo(0f));
        Assert.Throws<ArgumentException>(() => GrpoLoss.Compute(h, w, null, ids, mask, adv, options: new GrpoOptions { Beta = 0.1 }));
        Assert.Throws<ArgumentException>(() => GrpoLoss.Compute(h, w, null, ids, mask, adv, options: new GrpoOptions { Normalization = GrpoNormalization.Dapo }));
    }
}
