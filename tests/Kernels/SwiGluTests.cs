using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The fused SwiGLU against <c>silu(gate) * up</c> in TorchSharp: forward, and gradients against autograd.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class SwiGluTests(string deviceName) : DeviceFixture(deviceName)
{
    private (Tensor Gate, Tensor Up) Inputs(ScalarType dtype, long[] shape, ulong seed)
    {
        var gen = new Generator(seed);
        return ((randn(shape, generator: gen) * 4).to(dtype).to(Dev), randn(shape, generator: gen).to(dtype).to(Dev));
    }

    [Test, Category("Sanitize")]
    public void ForwardMatchesSiluTimesUp([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (g, u) = Inputs(dtype, [3, 5, 77], 1);
        var y = SwiGlu.Apply(g, u);
        var expected = FusedOpsReference.SwiGlu(g, u);
        // exp may differ from PyTorch's by an ulp in float32; after the dtype roundings that is at most one ulp.
        Assert.That(FusedOpsReference.WithinUlps(y, expected, dtype == ScalarType.Float32 ? 8 : 1), Is.True,
            $"relative error {TestEnv.RelativeError(y, expected):E3}");
    }

    [Test, Category("Sanitize")]
    public void GradientsMatchAutograd([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (g0, u0) = Inputs(dtype, [4, 129], 2);
        var up = randn([4, 129], generator: new Generator(3)).to(dtype).to(Dev);
        var (g, u) = (g0.detach().requires_grad_(), u0.detach().requires_grad_());
        FusedOpsReference.SwiGlu(g, u).backward([up]);
        var (eg, eu) = (g.grad!.clone(), u.grad!.clone());
        g.grad!.zero_();
        u.grad!.zero_();
        SwiGlu.Apply(g, u).backward([up]);
        var tol = dtype == ScalarType.Float32 ? 1e-5 : 1e-2;
        TestEnv.AssertClose(g.grad!, eg, tol, "dGate");
        TestEnv.AssertClose(u.grad!, eu, tol, "dUp");
    }

    [Test]
    public void MismatchedInputsAreArgumentExceptions()
    {
        using var scope = NewDisposeScope();
        Assert.Throws<ArgumentException>(() => SwiGlu.Apply(randn(4, 8).to(Dev), randn(4, 9).to(Dev)));
        Assert.Throws<ArgumentException>(() => SwiGlu.Apply(randn(4, 8).to(Dev), randn(4, 8).to(ScalarType.BFloat16).to(Dev)));
    }

    [Test, Category("Sanitize")]
    public void CudaMatchesCpu([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        if (DeviceName != "cuda") Assert.Ignore("the CUDA fixture compares CUDA with the CPU");
        using var scope = NewDisposeScope();
        var gen = new Generator(4);
        var g0 = (randn([1000, 33], generator: gen) * 4).to(dtype);
        var u0 = randn([1000, 33], generator: gen).to(dtype);
        var up = randn([1000, 33], generator: gen).to(dtype);
        Tensor[] Run(Device d)
        {
            var (g, u) = (g0.to(d).detach().requires_grad_(), u0.to(d).detach().requires_grad_());
            SwiGlu.Apply(g, u).backward([up.to(d)]);
            return [SwiGlu.Apply(g0.to(d), u0.to(d)).cpu(), g.grad!.cpu(), u.grad!.cpu()];
        }
        var (gpu, cpu) = (Run(CUDA), Run(CPU));
        // CUDA's expf and the host's exp may differ by an ulp or two in float32.
        var ulps = dtype == ScalarType.Float32 ? 8 : 1;
        Assert.That(FusedOpsReference.WithinUlps(gpu[0], cpu[0], ulps), Is.True, "forward");
        // silu' crosses zero (g ≈ -1.28), where an ulp of exp is a large relative change: compare the whole tensors.
        var tol = dtype == ScalarType.Float32 ? 1e-5 : 1e-2;
        TestEnv.AssertClose(gpu[1], cpu[1], tol, "dGate");
        TestEnv.AssertClose(gpu[2], cpu[2], tol, "dUp");
    }
}
