using NUnit.Framework;
using SlothSharp.Autograd;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// What the NF4 + LoRA node keeps of its input x for backward. With an adapter it keeps x for dA, or, given how x was
/// made from an RMSNorm (<see cref="Nf4LoraLinear.ApplyToNormOutput"/>), the norm's input and weight, making x again in
/// backward: the same output and gradients (of the norm's input and weight too) bit for bit. Without an adapter it
/// keeps nothing of x. "Not kept" is checked by overwriting x in place after the forward: autograd refuses the
/// backward of a node that saved a tensor changed since, and a node that reads nothing of x is unaffected.
/// </summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class Nf4LoraLinearNormInputTests(string device) : DeviceFixture(device)
{
    private const long In = 128, Out = 96, Rank = 4;
    private const double Eps = 1e-5, Dropout = 0.25;

    private sealed record Case(Tensor H, Tensor NormWeight, Nf4Weight W, Tensor? Bias, Tensor A, Tensor B, Tensor? Keep, Tensor G);

    private Case Make(ScalarType dtype, bool unitOffset, bool bias, bool dropout)
    {
        using var gen = new Generator(21);
        Tensor R(params long[] shape) => randn(shape, ScalarType.Float32, generator: gen);
        var w = Nf4Weight.Quantize((R(Out, In) * 0.1).to(Dev));
        var h = (R(2, 5, In) * 3).to(dtype).to(Dev).requires_grad_();
        // Gemma's form stores the offset from 1; Llama's the scale itself.
        var normWeight = ((unitOffset ? R(In) * 0.2 : 1 + R(In) * 0.2)).to(dtype).to(Dev).requires_grad_();
        var b = bias ? (R(Out) * 0.1).to(dtype).to(Dev).requires_grad_() : null;
        var a = (R(Rank, In) * 0.2).to(Dev).requires_grad_();
        var bb = (R(Out, Rank) * 0.2).to(Dev).requires_grad_();
        var keep = dropout ? rand([2, 5, In], generator: gen).ge(Dropout).to(Dev) : null;
        return new Case(h, normWeight, w, b, a, bb, keep, R(2, 5, Out).to(dtype).to(Dev));
    }

    private static Tensor? Leaf(Tensor? t) => t?.detach().clone().requires_grad_();

    /// <summary>A fresh copy of the case's trainable tensors (the NF4 weight and the mask shared).</summary>
    private static Case Fresh(Case c) =>
        c with { H = Leaf(c.H)!, NormWeight = Leaf(c.NormWeight)!, Bias = Leaf(c.Bias), A = Leaf(c.A)!, B = Leaf(c.B)! };

    /// <summary>norm(H) through the projection, x kept (recipe false) or made again (true); returns y and the norm output.</summary>
    private static (Tensor Y, Tensor X) Forward(Case c, bool unitOffset, bool recipe, double scale)
    {
        var x = RmsNorm.Apply(c.H, c.NormWeight, Eps, unitOffset);
        var p = c.Keep is null ? 0 : Dropout;
        var y = recipe
            ? Nf4LoraLinear.ApplyToNormOutput(x, new RmsNormRecipe(c.H, c.NormWeight, Eps, unitOffset), c.W, c.Bias, c.A, c.B, scale, c.Keep, p)
            : Nf4LoraLinear.Apply(x, c.W, c.Bias, c.A, c.B, scale, c.Keep, p);
        return (y, x);
    }

    private static void AssertSameGradients(Case got, Case want)
    {
        Assert.That(TestEnv.BitEqual(got.H.grad!, want.H.grad!), Is.True, "dH (through the norm)");
        Assert.That(TestEnv.BitEqual(got.NormWeight.grad!, want.NormWeight.grad!), Is.True, "d norm weight");
        Assert.That(TestEnv.BitEqual(got.A.grad!, want.A.grad!), Is.True, "dA");
        Assert.That(TestEnv.BitEqual(got.B.grad!, want.B.grad!), Is.True, "dB");
        if (want.Bias is not null) Assert.That(TestEnv.BitEqual(got.Bias!.grad!, want.Bias.grad!), Is.True, "dbias");
    }

    [TestCase(ScalarType.Float32, false, true, true, 2.0)]
    [TestCase(ScalarType.Float32, false, false, false, 2.0)]
    [TestCase(ScalarType.Float32, true, true, true, 1.5)]
    [TestCase(ScalarType.BFloat16, false, true, true, 2.0)]
    [TestCase(ScalarType.BFloat16, true, false, true, 1.5)]
    public void MakingTheNormOutputAgainGivesTheSameBits(ScalarType dtype, bool unitOffset, bool bias, bool dropout, double scale)
    {
        using var scope = NewDisposeScope();
        var kept = Make(dtype, unitOffset, bias, dropout);
        var remade = Fresh(kept);
        using (kept.W)
        {
            var (y1, _) = Forward(kept, unitOffset, recipe: false, scale);
            (y1 * kept.G).sum().backward();
            var (y2, _) = Forward(remade, unitOffset, recipe: true, scale);
            (y2 * remade.G).sum().backward();
            SlothAutograd.ThrowIfBackwardFailed();
            Assert.That(TestEnv.BitEqual(y2, y1), Is.True, "forward");
            AssertSameGradients(remade, kept);
        }
    }

    [Test]
    public void TheNormOutputIsNotKept([Values] bool recipe)
    {
        using var scope = NewDisposeScope();
        var clean = Make(ScalarType.Float32, false, true, true);
        var overwritten = Fresh(clean);
        using (clean.W)
        {
            var (y1, _) = Forward(clean, false, recipe, 2.0);
            (y1 * clean.G).sum().backward();
            var (y2, x2) = Forward(overwritten, false, recipe, 2.0);
            using (no_grad()) x2.fill_(double.NaN);
            (y2 * overwritten.G).sum().backward();
            if (!recipe)
            {
                // The check itself: a node that keeps x notices.
                Assert.Throws<SlothBackwardException>(SlothAutograd.ThrowIfBackwardFailed);
                return;
            }
            SlothAutograd.ThrowIfBackwardFailed();
            AssertSameGradients(overwritten, clean);
        }
    }

    [Test]
    public void WithoutAnAdapterNothingOfTheInputIsKept([Values] bool recipe)
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.Float32, false, true, false);
        using (c.W)
        {
            Tensor Run(Tensor h, Tensor? bias, bool overwrite)
            {
                var x = RmsNorm.Apply(h, c.NormWeight, Eps);
                var y = recipe
                    ? Nf4LoraLinear.ApplyToNormOutput(x, new RmsNormRecipe(h, c.NormWeight, Eps, false), c.W, bias, null, null, 1.0, null, 0)
                    : Nf4LoraLinear.Apply(x, c.W, bias);
                if (overwrite)
                    using (no_grad()) x.fill_(double.NaN);
                return y;
            }
            var (h1, b1, h2, b2) = (Leaf(c.H)!, Leaf(c.Bias)!, Leaf(c.H)!, Leaf(c.Bias)!);
            (Run(h1, b1, overwrite: false) * c.G).sum().backward();
            (Run(h2, b2, overwrite: true) * c.G).sum().backward();
            SlothAutograd.ThrowIfBackwardFailed();
            Assert.That(TestEnv.BitEqual(h2.grad!, h1.grad!), Is.True, "dH");
            Assert.That(TestEnv.BitEqual(b2.grad!, b1.grad!), Is.True, "dbias");
        }
    }

    [Test]
    public void ARecipeUnlikeTheInputIsAnArgumentException()
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.Float32, false, false, false);
        using (c.W)
        {
            var x = RmsNorm.Apply(c.H, c.NormWeight, Eps);
            Tensor Apply(RmsNormRecipe r) => Nf4LoraLinear.ApplyToNormOutput(x, r, c.W, null, c.A, c.B, 2.0, null, 0);
            Assert.Throws<ArgumentNullException>(() => Apply(null!));
            Assert.Throws<ArgumentException>(() => Apply(new RmsNormRecipe(c.H[0], c.NormWeight, Eps, false)), "shape");
            Assert.Throws<ArgumentException>(() => Apply(new RmsNormRecipe(c.H.to(ScalarType.BFloat16), c.NormWeight, Eps, false)), "dtype");
            Assert.Throws<ArgumentException>(() => Apply(new RmsNormRecipe(c.H, c.NormWeight.narrow(0, 0, In / 2), Eps, false)), "weight");
            var strided = c.H.detach().transpose(0, 1).contiguous().transpose(0, 1);
            Assert.Throws<ArgumentException>(() => Apply(new RmsNormRecipe(strided, c.NormWeight, Eps, false)), "not contiguous");
        }
    }
}
