using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The fused SwiGLU / GeGLU against <c>silu(gate) * up</c> and <c>gelu(gate, approximate="tanh") * up</c> in
/// TorchSharp: forward, and gradients against autograd.</summary>
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
    public void ForwardMatchesGeluTanhTimesUp([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (g, u) = Inputs(dtype, [3, 5, 77], 7);
        var y = SwiGlu.Apply(g, u, GateActivation.GeluTanh);
        var expected = FusedOpsReference.GeGlu(g, u);
        // tanh may differ from PyTorch's by an ulp; for g below about -3, 1 + tanh(..) cancels and that ulp becomes a
        // large relative change of a value under 1e-4 · |up|: hence the small absolute slack.
        Assert.That(FusedOpsReference.WithinUlpsOrAbs(y, expected, dtype == ScalarType.Float32 ? 8 : 1, 2e-6), Is.True,
            $"relative error {TestEnv.RelativeError(y, expected):E3}");
        // Not silu: the two activations differ.
        Assert.That(TestEnv.RelativeError(SwiGlu.Apply(g, u), expected), Is.GreaterThan(0.01));
    }

    [Test, Category("Sanitize")]
    public void GradientsMatchAutograd([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype, [Values] GateActivation activation)
    {
        using var scope = NewDisposeScope();
        var (g0, u0) = Inputs(dtype, [4, 129], 2);
        var up = randn([4, 129], generator: new Generator(3)).to(dtype).to(Dev);
        var (g, u) = (g0.detach().requires_grad_(), u0.detach().requires_grad_());
        (activation == GateActivation.Silu ? FusedOpsReference.SwiGlu(g, u) : FusedOpsReference.GeGlu(g, u)).backward([up]);
        var (eg, eu) = (g.grad!.clone(), u.grad!.clone());
        g.grad!.zero_();
        u.grad!.zero_();
        SwiGlu.Apply(g, u, activation).backward([up]);
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
        Assert.Throws<ArgumentOutOfRangeException>(() => SwiGlu.Apply(randn(4, 8).to(Dev), randn(4, 8).to(Dev), (GateActivation)7));
    }

    [Test, Category("Sanitize")]
    public void CudaMatchesCpu([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype, [Values] GateActivation activation)
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
            SwiGlu.Apply(g, u, activation).backward([up.to(d)]);
            return [SwiGlu.Apply(g0.to(d), u0.to(d), activation).cpu(), g.grad!.cpu(), u.grad!.cpu()];
        }
        var (gpu, cpu) = (Run(CUDA), Run(CPU));
        // CUDA's expf / tanhf and the host's may differ by an ulp or two in float32 (GELU: see the cancellation note in
        // ForwardMatchesGeluTanhTimesUp).
        var ulps = dtype == ScalarType.Float32 ? 8 : 1;
        Assert.That(FusedOpsReference.WithinUlpsOrAbs(gpu[0], cpu[0], ulps, activation == GateActivation.Silu ? 0 : 2e-6), Is.True, "forward");
        // silu' crosses zero (g ≈ -1.28), where an ulp of exp is a large relative change: compare the whole tensors.
        var tol = dtype == ScalarType.Float32 ? 1e-5 : 1e-2;
        TestEnv.AssertClose(gpu[1], cpu[1], tol, "dGate");
        TestEnv.AssertClose(gpu[2], cpu[2], tol, "dUp");
    }
}
