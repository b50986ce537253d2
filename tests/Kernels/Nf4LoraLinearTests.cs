using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Tests;

/// <summary>The NF4 + LoRA autograd node against autograd of the plain expression on the same dequantized weight.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class Nf4LoraLinearTests(string device) : DeviceFixture(device)
{
    private const long In = 128, Out = 96, Rank = 4;
    private const double Scale = 2.0, Dropout = 0.25;

    private sealed record Case(Tensor X, Nf4Weight W, Tensor? Bias, Tensor? A, Tensor? B, Tensor? Keep, Tensor G);

    private Case Make(ScalarType dtype, bool bias, bool lora, bool dropout)
    {
        using var gen = new Generator(11);
        Tensor R(params long[] shape) => randn(shape, ScalarType.Float32, generator: gen);
        var w = Nf4Weight.Quantize((R(Out, In) * 0.1).to(Dev));
        var x = R(2, 5, In).to(dtype).to(Dev).requires_grad_();
        var b = bias ? (R(Out) * 0.1).to(dtype).to(Dev).requires_grad_() : null;
        var a = lora ? (R(Rank, In) * 0.2).to(Dev).requires_grad_() : null;  // float32 adapters, as the model has
        var bb = lora ? (R(Out, Rank) * 0.2).to(Dev).requires_grad_() : null;
        var keep = dropout ? rand([2, 5, In], generator: gen).ge(Dropout).to(Dev) : null;
        var g = R(2, 5, Out).to(dtype).to(Dev);
        return new Case(x, w, b, a, bb, keep, g);
    }

    /// <summary>What Projection's plain path computes, differentiated by autograd.</summary>
    private static Tensor Reference(Case c, Tensor x, Tensor? bias, Tensor? a, Tensor? b, double scale = Scale)
    {
        var dtype = x.dtype;
        using var w = c.W.Dequantize(dtype);
        var y = functional.linear(x, w, bias);
        if (a is null) return y;
        var h = c.Keep is null ? x : x * c.Keep.to(dtype) * (1.0 / (1.0 - Dropout));
        return y + functional.linear(functional.linear(h, a.to(dtype)), b!.to(dtype)) * scale;
    }

    private static Tensor? Leaf(Tensor? t) => t?.detach().clone().requires_grad_();

    // Scale 2 takes the power-of-two branch of backward (scaling moved to the small products), 1.5 the general one.
    [TestCase(false, false, false, 2.0)]
    [TestCase(true, false, false, 2.0)]
    [TestCase(false, true, false, 2.0)]
    [TestCase(true, true, false, 2.0)]
    [TestCase(false, true, true, 2.0)]
    [TestCase(true, true, true, 2.0)]
    [TestCase(false, true, false, 1.5)]
    [TestCase(true, true, true, 1.5)]
    public void Float32GradientsMatchAutogradOfThePlainExpression(bool bias, bool lora, bool dropout, double scale)
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.Float32, bias, lora, dropout);
        using (c.W)
        {
            var y = Nf4LoraLinear.Apply(c.X, c.W, c.Bias, c.A, c.B, scale, c.Keep, dropout ? Dropout : 0);
            (y * c.G).sum().backward();
            var (x, b, a, bb) = (Leaf(c.X)!, Leaf(c.Bias), Leaf(c.A), Leaf(c.B));
            var yr = Reference(c, x, b, a, bb, scale);
            (yr * c.G).sum().backward();
            Assert.That(TestEnv.BitEqual(y, yr), Is.True, "forward: the same operations, the same bits");
            TestEnv.AssertClose(c.X.grad!, x.grad!, 1e-5, "dx");
            if (bias) TestEnv.AssertClose(c.Bias!.grad!, b!.grad!, 1e-5, "dbias");
            if (lora)
            {
                Assert.That(c.A!.grad!.dtype, Is.EqualTo(ScalarType.Float32));
                TestEnv.AssertClose(c.A.grad!, a!.grad!, 1e-5, "dA");
                TestEnv.AssertClose(c.B!.grad!, bb!.grad!, 1e-5, "dB");
            }
        }
    }

    [TestCase(2.0)]
    [TestCase(1.5)]
    public void Bfloat16MatchesTheReferenceWithinRounding(double scale)
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.BFloat16, true, true, true);
        using (c.W)
        {
            var y = Nf4LoraLinear.Apply(c.X, c.W, c.Bias, c.A, c.B, scale, c.Keep, Dropout);
            Assert.That(y.dtype, Is.EqualTo(ScalarType.BFloat16));
            (y * c.G).sum().backward();
            var (x, b, a, bb) = (Leaf(c.X)!, Leaf(c.Bias), Leaf(c.A), Leaf(c.B));
            var yr = Reference(c, x, b, a, bb, scale);
            (yr * c.G).sum().backward();
            Assert.That(TestEnv.BitEqual(y, yr), Is.True, "forward: the same operations, the same bits");
            TestEnv.AssertClose(c.X.grad!, x.grad!, 1e-2, "dx");
            TestEnv.AssertClose(c.A!.grad!, a!.grad!, 1e-2, "dA");
            TestEnv.AssertClose(c.B!.grad!, bb!.grad!, 1e-2, "dB");
            TestEnv.AssertClose(c.Bias!.grad!, b!.grad!, 1e-2, "dbias");
        }
    }

    [Test]
    public void FrozenInputGetsNoGradientWork()
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.Float32, false, true, false);
        using (c.W)
        {
            var x = c.X.detach();
            var y = Nf4LoraLinear.Apply(x, c.W, null, c.A, c.B, Scale);
            (y * c.G).sum().backward();
            Assert.That(x.grad, Is.Null);
            Assert.That(c.A!.grad, Is.Not.Null);
        }
    }

    [Test]
    public void BadArgumentsAreArgumentExceptions()
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.Float32, true, true, true);
        using (c.W)
        {
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.Apply(zeros([2, In + 1], device: Dev), c.W));
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.Apply(zeros([2, In], ScalarType.Int64, Dev), c.W));
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.Apply(c.X, c.W, zeros([Out + 1], device: Dev)));
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.Apply(c.X, c.W, null, c.A, null));
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.Apply(c.X, c.W, null, c.A, c.A));
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.Apply(c.X, c.W, null, null, null, 1, c.Keep, Dropout));
            Assert.Throws<ArgumentException>(() => Nf4LoraLinear.Apply(c.X, c.W, null, c.A, c.B, 1, c.Keep![0], Dropout));
            Assert.Throws<ArgumentOutOfRangeException>(() => Nf4LoraLinear.Apply(c.X, c.W, null, c.A, c.B, 1, c.Keep, 1.0));
        }
    }
}
