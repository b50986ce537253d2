using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The packed gated activation (sloth_swiglu_packed_*: a fused gate_up_proj's [.., 2 × cols] output read in place,
/// one packed gradient written) against the flat kernels on the two halves: the same bits, forward and backward, and
/// through the SwiGLU + NF4/LoRA down-projection node.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class SwiGluPackedTests(string deviceName) : DeviceFixture(deviceName)
{
    private static float[] Values(Tensor t) => t.to(ScalarType.Float32).cpu().data<float>().ToArray();

    // Shapes: several rows of an odd width (no vector alignment), and one row wider than a block's threads.
    [Test, Category("Sanitize")]
    public void EqualsTheFlatKernelOnTheHalves([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
                                               [Values] GateActivation activation, [Values(33, 600)] int cols)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(7);
        var rows = cols == 33 ? 37 : 3;
        var gateUp = (randn([rows, 2 * cols], generator: gen) * 3).to(dtype).to(Dev);
        var dy = randn([rows, cols], generator: gen).to(dtype).to(Dev);
        var native = GateActivations.ToNative(activation, nameof(activation));
        var (gate, up) = (gateUp.narrow(-1, 0, cols).contiguous(), gateUp.narrow(-1, cols, cols).contiguous());

        var flat = SwiGluFunction.Run(gate, up, native);
        var packed = SwiGluFunction.RunPacked(gateUp, native);
        Assert.That(packed.shape, Is.EqualTo(new long[] { rows, cols }));
        Assert.That(Values(packed), Is.EqualTo(Values(flat)), "forward");

        var (dGate, dUp) = SwiGluFunction.RunBackward(dy, gate, up, native);
        var dPacked = SwiGluFunction.RunPackedBackward(dy, gateUp, native);
        Assert.That(dPacked.shape, Is.EqualTo(gateUp.shape));
        Assert.That(Values(dPacked.narrow(-1, 0, cols)), Is.EqualTo(Values(dGate)), "gate half of the gradient");
        Assert.That(Values(dPacked.narrow(-1, cols, cols)), Is.EqualTo(Values(dUp)), "up half of the gradient");
    }

    // The kernels take 16-byte vectors when every pointer is 16-byte aligned and the count is whole vectors, else one
    // value per thread: a view one element into a buffer forces the scalar path on the same values.
    [Test, Category("Sanitize")]
    public void VectorAndScalarPathsGiveTheSameBits([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype,
                                                    [Values] bool packed)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(11);
        const long rows = 6, cols = 64;
        var width = packed ? 2 * cols : cols;
        Tensor Offset(Tensor t) => cat([zeros(1, dtype, Dev), t.flatten()]).narrow(0, 1, t.numel()).view(t.shape);  // misaligned
        var a = (randn([rows, width], generator: gen) * 3).to(dtype).to(Dev);
        var b = randn([rows, width], generator: gen).to(dtype).to(Dev);
        var dy = randn([rows, cols], generator: gen).to(dtype).to(Dev);
        const Interop.SlothGateActivation silu = Interop.SlothGateActivation.Silu;
        if (packed)
        {
            Assert.That(Values(SwiGluFunction.RunPacked(Offset(a), silu)), Is.EqualTo(Values(SwiGluFunction.RunPacked(a, silu))), "forward");
            Assert.That(Values(SwiGluFunction.RunPackedBackward(Offset(dy), Offset(a), silu)),
                Is.EqualTo(Values(SwiGluFunction.RunPackedBackward(dy, a, silu))), "backward");
            return;
        }
        Assert.That(Values(SwiGluFunction.Run(Offset(a), Offset(b), silu)), Is.EqualTo(Values(SwiGluFunction.Run(a, b, silu))), "forward");
        var (g1, u1) = SwiGluFunction.RunBackward(Offset(dy), Offset(a), Offset(b), silu);
        var (g2, u2) = SwiGluFunction.RunBackward(dy, a, b, silu);
        Assert.That(Values(g1), Is.EqualTo(Values(g2)), "dGate");
        Assert.That(Values(u1), Is.EqualTo(Values(u2)), "dUp");
    }

    [Test]
    public void EmptyRowsGiveEmptyResults()
    {
        using var scope = NewDisposeScope();
        var gateUp = zeros([0, 8], ScalarType.BFloat16, Dev);
        Assert.That(SwiGluFunction.RunPacked(gateUp, Interop.SlothGateActivation.Silu).shape, Is.EqualTo(new long[] { 0, 4 }));
        Assert.That(SwiGluFunction.RunPackedBackward(zeros([0, 4], ScalarType.BFloat16, Dev), gateUp, Interop.SlothGateActivation.Silu).shape,
            Is.EqualTo(new long[] { 0, 8 }));
    }

    [Test]
    public void TheDownProjectionNodeGivesTheSameBitsPackedOrNot([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype,
                                                                  [Values] bool dropout, [Values] GateActivation activation)
    {
        using var scope = NewDisposeScope();
        const long inter = 96, outF = 64, rank = 4;
        var gen = new Generator(3);
        Tensor R(params long[] shape) => randn(shape, ScalarType.Float32, generator: gen);
        using var w = Nf4Weight.Quantize((R(outF, inter) * 0.1).to(Dev));
        var gateUp0 = (R(2, 5, 2 * inter) * 2).to(dtype).to(Dev);
        var bias0 = (R(outF) * 0.1).to(dtype).to(Dev);
        var a0 = (R(rank, inter) * 0.2).to(Dev);
        var b0 = (R(outF, rank) * 0.2).to(Dev);
        var keep = dropout ? rand([2, 5, inter], generator: gen).ge(0.25).to(Dev) : null;
        var g = R(2, 5, outF).to(dtype).to(Dev);
        var p = dropout ? 0.25 : 0;

        Tensor Leaf(Tensor t) => t.detach().clone().requires_grad_();
        var (gu1, bias1, a1, b1) = (Leaf(gateUp0), Leaf(bias0), Leaf(a0), Leaf(b0));
        var halves = gu1.split([inter, inter], -1);
        var split = SwiGluNf4LoraLinear.Apply(halves[0], halves[1], w, bias1, a1, b1, 2.0, keep, p, activation);
        split.backward([g]);
        var (gu2, bias2, a2, b2) = (Leaf(gateUp0), Leaf(bias0), Leaf(a0), Leaf(b0));
        var packed = SwiGluNf4LoraLinear.ApplyPacked(gu2, w, bias2, a2, b2, 2.0, keep, p, activation);
        packed.backward([g]);

        Assert.That(Values(packed), Is.EqualTo(Values(split)), "y");
        Assert.That(Values(gu2.grad!), Is.EqualTo(Values(gu1.grad!)), "d(gate/up)");
        Assert.That(Values(bias2.grad!), Is.EqualTo(Values(bias1.grad!)), "dBias");
        Assert.That(Values(a2.grad!), Is.EqualTo(Values(a1.grad!)), "dA");
        Assert.That(Values(b2.grad!), Is.EqualTo(Values(b1.grad!)), "dB");
    }

    [Test]
    public void AnOddPackedWidthIsAnArgumentException()
    {
        using var scope = NewDisposeScope();
        using var w = Nf4Weight.Quantize(randn([64, 64]).to(Dev));
        Assert.Throws<ArgumentException>(() => SwiGluNf4LoraLinear.ApplyPacked(randn([2, 129]).to(Dev), w));
        Assert.Throws<ArgumentException>(() => SwiGluNf4LoraLinear.ApplyPacked(randn([2, 130]).to(Dev), w));  // half 65 ≠ 64
    }
}
