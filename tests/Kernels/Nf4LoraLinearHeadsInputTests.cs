using NUnit.Framework;
using SlothSharp.Autograd;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// The o projection's input is attention's output heads [B, H, T, D] laid side by side ([B, T, H·D], a copy). Given the
/// heads (<see cref="Nf4LoraLinear.ApplyToHeadsOutput"/>), the NF4 + LoRA node keeps them (which SDPA's node keeps
/// anyway) instead of the copy and makes the copy again in backward: the same output and gradients bit for bit, and the
/// copy can be overwritten after the forward without changing a gradient (autograd refuses the backward of a node
/// that saved a tensor changed since, so a node that kept it notices).
/// </summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class Nf4LoraLinearHeadsInputTests(string device) : DeviceFixture(device)
{
    private const long B = 2, H = 4, T = 5, D = 16, Out = 48, Rank = 4;

    private sealed record Case(Tensor Heads, Nf4Weight W, Tensor Bias, Tensor A, Tensor Bb, Tensor? Keep, Tensor G);

    private Case Make(ScalarType dtype, bool dropout, ulong seed = 8)
    {
        using var gen = new Generator(seed);
        Tensor R(params long[] shape) => randn(shape, ScalarType.Float32, generator: gen);
        var w = Nf4Weight.Quantize((R(Out, H * D) * 0.1).to(Dev));
        var heads = R(B, H, T, D).to(dtype).to(Dev).requires_grad_();
        var keep = dropout ? rand([B, T, H * D], generator: gen).ge(0.25).to(Dev) : null;
        return new Case(heads, w, (R(Out) * 0.1).to(dtype).to(Dev).requires_grad_(), (R(Rank, H * D) * 0.2).to(Dev).requires_grad_(),
            (R(Out, Rank) * 0.2).to(Dev).requires_grad_(), keep, R(B, T, Out).to(dtype).to(Dev));
    }

    private static Tensor Leaf(Tensor t) => t.detach().clone().requires_grad_();

    private static Case Fresh(Case c) => c with { Heads = Leaf(c.Heads), Bias = Leaf(c.Bias), A = Leaf(c.A), Bb = Leaf(c.Bb) };

    /// <summary>The heads through the projection; returns y and the [B, T, H·D] copy it was given.</summary>
    private static (Tensor Y, Tensor X) Forward(Case c, bool fromHeads, double scale)
    {
        // Attention's output as SDPA gives it: a tensor of its own (the leaf times one), then the o projection's copy.
        var heads = c.Heads * 1.0;
        var x = heads.transpose(1, 2).reshape(B, T, H * D);
        var p = c.Keep is null ? 0 : 0.25;
        var y = fromHeads
            ? Nf4LoraLinear.ApplyToHeadsOutput(x, heads, c.W, c.Bias, c.A, c.Bb, scale, c.Keep, p)
            : Nf4LoraLinear.Apply(x, c.W, c.Bias, c.A, c.Bb, scale, c.Keep, p);
        return (y, x);
    }

    private static void AssertSameGradients(Case got, Case want)
    {
        Assert.That(TestEnv.BitEqual(got.Heads.grad!, want.Heads.grad!), Is.True, "dHeads");
        Assert.That(TestEnv.BitEqual(got.A.grad!, want.A.grad!), Is.True, "dA");
        Assert.That(TestEnv.BitEqual(got.Bb.grad!, want.Bb.grad!), Is.True, "dB");
        Assert.That(TestEnv.BitEqual(got.Bias.grad!, want.Bias.grad!), Is.True, "dbias");
    }

    [TestCase(ScalarType.Float32, false, 2.0)]
    [TestCase(ScalarType.Float32, true, 1.5)]
    [TestCase(ScalarType.BFloat16, true, 2.0)]
    public void MakingTheCopyAgainGivesTheSameBits(ScalarType dtype, bool dropout, double scale)
    {
        using var scope = NewDisposeScope();
        var kept = Make(dtype, dropout);
        var remade = Fresh(kept);
        using (kept.W)
        {
            var (y1, _) = Forward(kept, fromHeads: false, scale);
            (y1 * kept.G).sum().backward();
            var (y2, _) = Forward(remade, fromHeads: true, scale);
            (y2 * remade.G).sum().backward();
            SlothAutograd.ThrowIfBackwardFailed();
            Assert.That(TestEnv.BitEqual(y2, y1), Is.True, "forward");
            AssertSameGradients(remade, kept);
        }
    }

    [Test]
    public void TheCopyIsNotKept([Values] bool fromHeads)
    {
        using var scope = NewDisposeScope();
        var clean = Make(ScalarType.Float32, dropout: true);
        var overwritten = Fresh(clean);
        using (clean.W)
        {
            var (y1, _) = Forward(clean, fromHeads, 2.0);
            (y1 * clean.G).sum().backward();
            var (y2, x2) = Forward(overwritten, fromHeads, 2.0);
            using (no_grad()) x2.fill_(double.NaN);
            (y2 * overwritten.G).sum().backward();
            if (!fromHeads)
            {
                Assert.Throws<SlothBackwardException>(SlothAutograd.ThrowIfBackwardFailed, "a node that keeps the copy notices");
                return;
            }
            SlothAutograd.ThrowIfBackwardFailed();
            AssertSameGradients(overwritten, clean);
        }
    }

    [Test]
    public void HeadsUnlikeTheInputAreAnArgumentException()
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.Float32, dropout: false);
        using (c.W)
        {
            var x = c.Heads.detach().transpose(1, 2).reshape(B, T, H * D);
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.ApplyToHeadsOutput(x, c.Heads.detach().narrow(1, 0, 2), c.W, null, c.A, c.Bb, 2.0, null, 0));
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.ApplyToHeadsOutput(x, c.Heads.detach().to(ScalarType.Float64), c.W, null, c.A, c.Bb, 2.0, null, 0));
        }
    }
}
