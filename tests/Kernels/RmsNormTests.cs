using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The fused RMSNorm against LlamaRMSNorm written in TorchSharp: forward, and gradients against autograd.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class RmsNormTests(string deviceName) : DeviceFixture(deviceName)
{
    private const double Eps = 1e-5;

    private (Tensor X, Tensor W) Inputs(ScalarType dtype, long rows = 6, long cols = 300, ulong seed = 1)
    {
        var gen = new Generator(seed);
        var x = (randn([2, rows / 2, cols], generator: gen) * 3).to(dtype).to(Dev);
        var w = (1 + 0.2 * randn([cols], generator: gen)).to(dtype).to(Dev);
        return (x, w);
    }

    [Test, Category("Sanitize")]
    public void ForwardMatchesLlamaRmsNorm([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (x, w) = Inputs(dtype);
        var y = RmsNorm.Apply(x, w, Eps);
        var expected = FusedOpsReference.RmsNorm(x, w, Eps);
        Assert.That(y.dtype, Is.EqualTo(dtype));
        Assert.That(y.shape, Is.EqualTo(x.shape));
        // rstd may differ from PyTorch's by an ulp (summation order); that moves h and y by at most one ulp each.
        Assert.That(FusedOpsReference.WithinUlps(y, expected, dtype == ScalarType.Float32 ? 8 : 2), Is.True,
            $"relative error {TestEnv.RelativeError(y, expected):E3}");
    }

    [Test, Category("Sanitize")]
    public void GradientsMatchAutograd([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (x0, w0) = Inputs(dtype, seed: 2);
        var up = randn(x0.shape, generator: new Generator(3)).to(dtype).to(Dev);
        var x = x0.detach().requires_grad_();
        var w = w0.detach().requires_grad_();
        FusedOpsReference.RmsNorm(x, w, Eps).backward([up]);
        var (ex, ew) = (x.grad!.clone(), w.grad!.clone());
        x.grad!.zero_();
        w.grad!.zero_();
        RmsNorm.Apply(x, w, Eps).backward([up]);
        var tol = dtype == ScalarType.Float32 ? 1e-5 : 1e-2;
        TestEnv.AssertClose(x.grad!, ex, tol, "dX");
        TestEnv.AssertClose(w.grad!, ew, tol, "dW");
        Assert.That(w.grad!.dtype, Is.EqualTo(dtype));
    }

    [Test]
    public void FrozenWeightGetsNoGradientAndLayerWorks()
    {
        using var scope = NewDisposeScope();
        var layer = new RmsNormLayer(300, Eps, device: Dev);
        Assert.That(layer.state_dict().Keys, Is.EquivalentTo(new[] { "weight" }));
        var (x0, _) = Inputs(ScalarType.Float32, seed: 4);
        var x = x0.detach().requires_grad_();
        layer.weight.requires_grad_(false);
        layer.forward(x).sum().backward();
        Assert.That(layer.weight.grad, Is.Null);
        Assert.That(x.grad, Is.Not.Null);
    }

    [Test]
    public void BadArgumentsAreArgumentExceptions()
    {
        using var scope = NewDisposeScope();
        var x = randn([4, 8]).to(Dev);
        Assert.Throws<ArgumentException>(() => RmsNorm.Apply(x, ones(7).to(Dev)));
        Assert.Throws<ArgumentException>(() => RmsNorm.Apply(x, ones(8, ScalarType.BFloat16).to(Dev)));
        Assert.Throws<ArgumentException>(() => RmsNorm.Apply(x.to(ScalarType.Int32), ones(8, ScalarType.Int32).to(Dev)));
        Assert.Throws<ArgumentOutOfRangeException>(() => RmsNorm.Apply(x, ones(8).to(Dev), -1));
    }

    [Test, Category("Sanitize")]
    public void CudaMatchesCpu([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        if (DeviceName != "cuda") Assert.Ignore("the CUDA fixture compares CUDA with the CPU");
        using var scope = NewDisposeScope();
        var (x0, w0) = Inputs(dtype, rows: 10, cols: 2051, seed: 5);
        var up = randn(x0.shape, generator: new Generator(6)).to(dtype);
        Tensor[] Run(Device d)
        {
            var x = x0.to(d).detach().requires_grad_();
            var w = w0.to(d).detach().requires_grad_();
            var y = RmsNorm.Apply(x, w, Eps);
            y.backward([up.to(d)]);
            return [y.cpu(), x.grad!.cpu(), w.grad!.cpu()];
        }
        var (gpu, cpu) = (Run(CUDA), Run(CPU));
        var ulps = dtype == ScalarType.Float32 ? 8 : 1;
        Assert.That(FusedOpsReference.WithinUlps(gpu[0], cpu[0], ulps), Is.True, "y");
        var tol = dtype == ScalarType.Float32 ? 1e-5 : 1e-2;
        TestEnv.AssertClose(gpu[1], cpu[1], tol, "dX");
        TestEnv.AssertClose(gpu[2], cpu[2], tol, "dW");
    }
}
