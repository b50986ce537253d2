using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Tests;

/// <summary>The SwiGLU + NF4/LoRA down-projection node: bit for bit the two separate nodes, and autograd of the plain
/// expression in float32.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class SwiGluNf4LoraLinearTests(string device) : DeviceFixture(device)
{
    private const long Inter = 128, Out = 64, Rank = 4;
    private const double Dropout = 0.25;

    private sealed record Case(Tensor Gate, Tensor Up, Nf4Weight W, Tensor? Bias, Tensor A, Tensor B, Tensor? Keep, Tensor G);

    private Case Make(ScalarType dtype, bool bias, bool dropout)
    {
        using var gen = new Generator(21);
        Tensor R(params long[] shape) => randn(shape, ScalarType.Float32, generator: gen);
        var w = Nf4Weight.Quantize((R(Out, Inter) * 0.1).to(Dev));
        var gate = R(2, 5, Inter).to(dtype).to(Dev).requires_grad_();
        var up = R(2, 5, Inter).to(dtype).to(Dev).requires_grad_();
        var b = bias ? (R(Out) * 0.1).to(dtype).to(Dev).requires_grad_() : null;
        var a = (R(Rank, Inter) * 0.2).to(Dev).requires_grad_();
        var bb = (R(Out, Rank) * 0.2).to(Dev).requires_grad_();
        var keep = dropout ? rand([2, 5, Inter], generator: gen).ge(Dropout).to(Dev) : null;
        var g = R(2, 5, Out).to(dtype).to(Dev);
        return new Case(gate, up, w, b, a, bb, keep, g);
    }

    private static Tensor? Leaf(Tensor? t) => t?.detach().clone().requires_grad_();

    private static List<Tensor?> Grads(Tensor y, Tensor g, params Tensor?[] leaves)
    {
        y.backward([g]);
        return leaves.Select(l => l?.grad?.clone()).ToList();
    }

    [Test]
    public void EqualsTheTwoSeparateNodesBitForBit([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype,
                                                   [Values] bool bias, [Values] bool dropout, [Values(2.0, 1.5)] double scale,
                                                   [Values] GateActivation activation)
    {
        using var scope = NewDisposeScope();
        var c = Make(dtype, bias, dropout);
        using (c.W)
        {
            var p = dropout ? Dropout : 0;
            var (g1, u1, b1, a1, bb1) = (Leaf(c.Gate)!, Leaf(c.Up)!, Leaf(c.Bias), Leaf(c.A)!, Leaf(c.B)!);
            var separate = Nf4LoraLinear.Apply(SwiGlu.Apply(g1, u1, activation), c.W, b1, a1, bb1, scale, c.Keep, p);
            var expected = Grads(separate, c.G, g1, u1, b1, a1, bb1);
            var (g2, u2, b2, a2, bb2) = (Leaf(c.Gate)!, Leaf(c.Up)!, Leaf(c.Bias), Leaf(c.A)!, Leaf(c.B)!);
            var fused = SwiGluNf4LoraLinear.Apply(g2, u2, c.W, b2, a2, bb2, scale, c.Keep, p, activation);
            var actual = Grads(fused, c.G, g2, u2, b2, a2, bb2);
            Assert.That(fused.to(ScalarType.Float32).cpu().data<float>().ToArray(), Is.EqualTo(separate.to(ScalarType.Float32).cpu().data<float>().ToArray()), "y");
            string[] names = ["dGate", "dUp", "dBias", "dA", "dB"];
            for (var i = 0; i < names.Length; i++)
            {
                if (expected[i] is null) { Assert.That(actual[i], Is.Null, names[i]); continue; }
                Assert.That(actual[i]!.to(ScalarType.Float32).cpu().data<float>().ToArray(),
                    Is.EqualTo(expected[i]!.to(ScalarType.Float32).cpu().data<float>().ToArray()), names[i]);
            }
        }
    }

    [Test]
    public void Float32GradientsMatchAutogradOfThePlainExpression([Values] bool dropout, [Values] GateActivation activation)
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.Float32, bias: true, dropout);
        using (c.W)
        {
            var p = dropout ? Dropout : 0;
            var (g1, u1, b1, a1, bb1) = (Leaf(c.Gate)!, Leaf(c.Up)!, Leaf(c.Bias), Leaf(c.A)!, Leaf(c.B)!);
            var h = (activation == GateActivation.Silu ? functional.silu(g1) : functional.gelu(g1, TorchSharp.Modules.GELU.Approximate.tanh)) * u1;
            using var w = c.W.Dequantize(ScalarType.Float32);
            var hk = c.Keep is null ? h : h * c.Keep.to(ScalarType.Float32) * (1.0 / (1.0 - p));
            var plain = functional.linear(h, w, b1) + functional.linear(functional.linear(hk, a1), bb1) * 2.0;
            var expected = Grads(plain, c.G, g1, u1, b1, a1, bb1);
            var (g2, u2, b2, a2, bb2) = (Leaf(c.Gate)!, Leaf(c.Up)!, Leaf(c.Bias), Leaf(c.A)!, Leaf(c.B)!);
            var fused = SwiGluNf4LoraLinear.Apply(g2, u2, c.W, b2, a2, bb2, 2.0, c.Keep, p, activation);
            var actual = Grads(fused, c.G, g2, u2, b2, a2, bb2);
            TestEnv.AssertClose(fused, plain, 1e-5, "y");
            string[] names = ["dGate", "dUp", "dBias", "dA", "dB"];
            for (var i = 0; i < names.Length; i++) TestEnv.AssertClose(actual[i]!, expected[i]!, 1e-5, names[i]);
        }
    }

    [Test]
    public void BadArguments()
    {
        using var scope = NewDisposeScope();
        var c = Make(ScalarType.Float32, bias: false, dropout: false);
        using (c.W)
        {
            Assert.Throws<ArgumentException>(() => SwiGluNf4LoraLinear.Apply(c.Gate, c.Up.narrow(1, 0, 2), c.W));
            Assert.Throws<ArgumentException>(() => SwiGluNf4LoraLinear.Apply(c.Gate, c.Up.to(ScalarType.Float64), c.W));
            Assert.Throws<ArgumentException>(() => SwiGluNf4LoraLinear.Apply(c.Gate.narrow(2, 0, 8), c.Up.narrow(2, 0, 8), c.W));
            Assert.Throws<ArgumentException>(() => SwiGluNf4LoraLinear.Apply(c.Gate, c.Up, c.W, null, c.A, null));
            Assert.Throws<ArgumentOutOfRangeException>(() => SwiGluNf4LoraLinear.Apply(c.Gate, c.Up, c.W, activation: (GateActivation)9));
        }
    }
}
