using NUnit.Framework;
using SlothSharp.Interop;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The fused RoPE against transformers' apply_rotary_pos_emb in TorchSharp: the same roundings, so the same
/// bits; the backward against autograd of that expression.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class RopeTests(string deviceName) : DeviceFixture(deviceName)
{
    private const long B = 2, H = 3, T = 7, D = 16;

    private static Tensor ToBthd(Tensor bhtd) => bhtd.transpose(1, 2).contiguous();

    [Test, Category("Sanitize")]
    public void ForwardIsBitIdenticalToTransformers(
        [Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
        [Values(SlothRopeLayout.Bhtd, SlothRopeLayout.Bthd)] SlothRopeLayout layout)
    {
        using var scope = NewDisposeScope();
        var x = randn([B, H, T, D], generator: new Generator(1)).to(dtype).to(Dev);
        var (cos, sin) = FusedOpsReference.RopeTables(T, D, 500);
        var expected = FusedOpsReference.Rope(x, cos.to(Dev), sin.to(Dev));
        var actual = layout == SlothRopeLayout.Bhtd
            ? Rope.Apply(x, cos.to(Dev), sin.to(Dev), layout)
            : Rope.Apply(ToBthd(x), cos.to(Dev), sin.to(Dev), layout).transpose(1, 2);
        Assert.That(TestEnv.BitEqual(actual.contiguous(), expected), Is.True, $"relative error {TestEnv.RelativeError(actual, expected):E3}");
    }

    [Test, Category("Sanitize")]
    public void BackwardMatchesAutogradWithPerBatchTables(
        [Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype,
        [Values(SlothRopeLayout.Bhtd, SlothRopeLayout.Bthd)] SlothRopeLayout layout)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(2);
        // General tables (halves differ, one per batch row): the backward formula must not rely on cat(freqs, freqs).
        var cos = randn([B, T, D], generator: gen).to(Dev);
        var sin = randn([B, T, D], generator: gen).to(Dev);
        var x0 = randn([B, H, T, D], generator: gen).to(dtype).to(Dev);
        var up = randn([B, H, T, D], generator: gen).to(dtype).to(Dev);
        var x = x0.detach().requires_grad_();
        var expectedY = FusedOpsReference.Rope(x, cos, sin);
        expectedY.backward([up]);
        var expected = x.grad!.clone();

        Tensor actualY, actualGrad;
        if (layout == SlothRopeLayout.Bhtd)
        {
            var xa = x0.detach().requires_grad_();
            actualY = Rope.Apply(xa, cos, sin, layout);
            actualY.backward([up]);
            actualGrad = xa.grad!;
        }
        else
        {
            var xa = ToBthd(x0).requires_grad_();
            actualY = Rope.Apply(xa, cos, sin, layout).transpose(1, 2);
            actualY.backward([up]);
            actualGrad = xa.grad!.transpose(1, 2);
        }
        Assert.That(TestEnv.BitEqual(actualY.contiguous(), expectedY.detach()), Is.True, "forward with per-batch tables");
        TestEnv.AssertClose(actualGrad, expected, dtype == ScalarType.Float32 ? 1e-6 : 1e-2, "dX");
    }

    /// <summary>Phi-3's partial rotary (partial_rotary_factor 0.75 and 0.5 of a 16-wide head): bit-identical to
    /// transformers' cat([rope(x[..., :R]), x[..., R:]]), both layouts, and R = D is the full rotation.</summary>
    [Test, Category("Sanitize")]
    public void PartialRotaryIsBitIdenticalToPhi3(
        [Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
        [Values(SlothRopeLayout.Bhtd, SlothRopeLayout.Bthd)] SlothRopeLayout layout,
        [Values(12, 8, 16)] int rotaryDim)
    {
        using var scope = NewDisposeScope();
        var x = randn([B, H, T, D], generator: new Generator(4)).to(dtype).to(Dev);
        var (cos, sin) = FusedOpsReference.RopeTables(T, rotaryDim, 10000);
        var expected = FusedOpsReference.PartialRope(x, cos.to(Dev), sin.to(Dev));
        var actual = layout == SlothRopeLayout.Bhtd
            ? Rope.Apply(x, cos.to(Dev), sin.to(Dev), layout, rotaryDim)
            : Rope.Apply(ToBthd(x), cos.to(Dev), sin.to(Dev), layout, rotaryDim).transpose(1, 2);
        Assert.That(TestEnv.BitEqual(actual.contiguous(), expected), Is.True, $"relative error {TestEnv.RelativeError(actual, expected):E3}");
        if (rotaryDim < D)
        {
            var pass = actual[TensorIndex.Ellipsis, TensorIndex.Slice(rotaryDim)].contiguous();
            Assert.That(TestEnv.BitEqual(pass, x[TensorIndex.Ellipsis, TensorIndex.Slice(rotaryDim)].contiguous()), Is.True, "pass-through");
        }
    }

    [Test, Category("Sanitize")]
    public void PartialRotaryBackwardMatchesAutograd([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype,
                                                     [Values(SlothRopeLayout.Bhtd, SlothRopeLayout.Bthd)] SlothRopeLayout layout)
    {
        using var scope = NewDisposeScope();
        const int rd = 10;
        var gen = new Generator(5);
        var cos = randn([B, T, rd], generator: gen).to(Dev);
        var sin = randn([B, T, rd], generator: gen).to(Dev);
        var x0 = randn([B, H, T, D], generator: gen).to(dtype).to(Dev);
        var up = randn([B, H, T, D], generator: gen).to(dtype).to(Dev);
        var x = x0.detach().requires_grad_();
        FusedOpsReference.PartialRope(x, cos, sin).backward([up]);
        var expected = x.grad!.clone();
        Tensor actualGrad;
        if (layout == SlothRopeLayout.Bhtd)
        {
            var xa = x0.detach().requires_grad_();
            Rope.Apply(xa, cos, sin, layout, rd).backward([up]);
            actualGrad = xa.grad!;
        }
        else
        {
            var xa = ToBthd(x0).requires_grad_();
            Rope.Apply(xa, cos, sin, layout, rd).transpose(1, 2).backward([up]);
            actualGrad = xa.grad!.transpose(1, 2);
        }
        TestEnv.AssertClose(actualGrad, expected, dtype == ScalarType.Float32 ? 1e-6 : 1e-2, "dX");
        // The pass-through features' gradient is the upstream gradient itself.
        Assert.That(TestEnv.BitEqual(actualGrad[TensorIndex.Ellipsis, TensorIndex.Slice(rd)].contiguous(),
            up[TensorIndex.Ellipsis, TensorIndex.Slice(rd)].contiguous()), Is.True, "pass-through gradient");
    }

    [Test]
    public void BadRotaryDimsAreArgumentExceptions()
    {
        using var scope = NewDisposeScope();
        var x = randn([B, H, T, D]).to(Dev);
        var (cos, sin) = FusedOpsReference.RopeTables(T, 8);
        Assert.Throws<ArgumentException>(() => Rope.Apply(x, cos.to(Dev), sin.to(Dev)), "tables narrower than the head without rotaryDim");
        Assert.Throws<ArgumentException>(() => Rope.Apply(x, cos.to(Dev), sin.to(Dev), rotaryDim: 10), "tables of another width");
        Assert.Throws<ArgumentOutOfRangeException>(() => Rope.Apply(x, cos.to(Dev), sin.to(Dev), rotaryDim: 7));
        Assert.Throws<ArgumentOutOfRangeException>(() => Rope.Apply(x, cos.to(Dev), sin.to(Dev), rotaryDim: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Rope.Apply(x, cos.to(Dev), sin.to(Dev), rotaryDim: (int)D + 2));
    }

    [Test]
    public void BadShapesAreArgumentExceptions()
    {
        using var scope = NewDisposeScope();
        var x = randn([B, H, T, D]).to(Dev);
        var (cos, sin) = FusedOpsReference.RopeTables(T, D);
        Assert.Throws<ArgumentException>(() => Rope.Apply(x, cos.to(Dev)[TensorIndex.Slice(0, T - 1)], sin.to(Dev)));
        Assert.Throws<ArgumentException>(() => Rope.Apply(randn([B, H, T, D - 1]).to(Dev), cos.to(Dev), sin.to(Dev)));
        Assert.Throws<ArgumentException>(() => Rope.Apply(x.flatten(0, 1), cos.to(Dev), sin.to(Dev)));
        Assert.Throws<ArgumentException>(() => Rope.Apply(x, cos.to(Dev), sin.to(Dev), SlothRopeLayout.Bthd), "T and heads swapped");
    }

    [Test, Category("Sanitize")]
    public void CudaIsBitIdenticalToCpu([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        if (DeviceName != "cuda") Assert.Ignore("the CUDA fixture compares CUDA with the CPU");
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        var x0 = randn([3, 37, 5, 64], generator: gen).to(dtype);
        var up = randn([3, 37, 5, 64], generator: gen).to(dtype);
        var (cos, sin) = FusedOpsReference.RopeTables(37, 64, 500000);
        Tensor[] Run(Device d)
        {
            var x = x0.to(d).detach().requires_grad_();
            var y = Rope.Apply(x, cos.to(d), sin.to(d), SlothRopeLayout.Bthd);
            y.backward([up.to(d)]);
            return [y.cpu(), x.grad!.cpu()];
        }
        var (gpu, cpu) = (Run(CUDA), Run(CPU));
        Assert.That(TestEnv.BitEqual(gpu[0], cpu[0]), Is.True, "forward");
        Assert.That(TestEnv.BitEqual(gpu[1], cpu[1]), Is.True, "backward");
    }

    [Test, Category("Sanitize")]
    public void CudaPartialRotaryIsBitIdenticalToCpu([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        if (DeviceName != "cuda") Assert.Ignore("the CUDA fixture compares CUDA with the CPU");
        using var scope = NewDisposeScope();
        var gen = new Generator(6);
        var x0 = randn([2, 37, 5, 96], generator: gen).to(dtype);  // Phi-3-style: 96-wide heads, 3/4 of them turning
        var up = randn([2, 37, 5, 96], generator: gen).to(dtype);
        var (cos, sin) = FusedOpsReference.RopeTables(37, 72, 10000);
        Tensor[] Run(Device d)
        {
            var x = x0.to(d).detach().requires_grad_();
            var y = Rope.Apply(x, cos.to(d), sin.to(d), SlothRopeLayout.Bthd, 72);
            y.backward([up.to(d)]);
            return [y.cpu(), x.grad!.cpu()];
        }
        var (gpu, cpu) = (Run(CUDA), Run(CPU));
        Assert.That(TestEnv.BitEqual(gpu[0], cpu[0]), Is.True, "forward");
        Assert.That(TestEnv.BitEqual(gpu[1], cpu[1]), Is.True, "backward");
    }
}
