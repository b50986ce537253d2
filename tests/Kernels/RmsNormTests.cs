using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The fused RMSNorm against LlamaRMSNorm and GemmaRMSNorm written in TorchSharp: forward, and gradients
/// against autograd; also as a per-head q/k norm on [B, T, heads, head_dim].</summary>
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

    private static Tensor Reference(Tensor x, Tensor w, bool unitOffset) =>
        unitOffset ? FusedOpsReference.GemmaRmsNorm(x, w, Eps) : FusedOpsReference.RmsNorm(x, w, Eps);

    [Test, Category("Sanitize")]
    public void GemmaFormMatchesGemmaRmsNorm([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (x, w0) = Inputs(dtype, seed: 11);
        var w = (w0 - 1).to(dtype);  // Gemma stores the offset from 1: small values around 0
        var y = RmsNorm.Apply(x, w, Eps, unitOffset: true);
        var expected = FusedOpsReference.GemmaRmsNorm(x, w, Eps);
        Assert.That(y.dtype, Is.EqualTo(dtype));
        // One rounding at the end; rstd may differ from PyTorch's by an ulp, which can flip that rounding.
        Assert.That(FusedOpsReference.WithinUlps(y, expected, dtype == ScalarType.Float32 ? 8 : 1), Is.True,
            $"relative error {TestEnv.RelativeError(y, expected):E3}");
        // Not the Llama form: (1 + w) in float32 differs from w (and from rounding h first).
        Assert.That(TestEnv.RelativeError(RmsNorm.Apply(x, w, Eps), expected), Is.GreaterThan(0.1));
    }

    [Test, Category("Sanitize")]
    public void GemmaFormGradientsMatchAutograd([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (x0, w0) = Inputs(dtype, seed: 12);
        var up = randn(x0.shape, generator: new Generator(13)).to(dtype).to(Dev);
        var x = x0.detach().requires_grad_();
        var w = (w0 - 1).to(dtype).detach().requires_grad_();
        FusedOpsReference.GemmaRmsNorm(x, w, Eps).backward([up]);
        var (ex, ew) = (x.grad!.clone(), w.grad!.clone());
        x.grad!.zero_();
        w.grad!.zero_();
        RmsNorm.Apply(x, w, Eps, unitOffset: true).backward([up]);
        var tol = dtype == ScalarType.Float32 ? 1e-5 : 1e-2;
        TestEnv.AssertClose(x.grad!, ex, tol, "dX");
        TestEnv.AssertClose(w.grad!, ew, tol, "dW");
        Assert.That(w.grad!.dtype, Is.EqualTo(dtype));
    }

    /// <summary>Qwen3's (Llama form) and Gemma 3's (unit offset) q/k norms: the projection output viewed per head,
    /// normalised over head_dim with a [head_dim] weight; gradients through the view.</summary>
    [Test, Category("Sanitize")]
    public void PerHeadNormOnAProjectionView([Values] bool unitOffset,
                                             [Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        const long b = 2, t = 5, heads = 3, headDim = 64;
        var gen = new Generator(14);
        var hidden = randn([b, t, 48], generator: gen).to(dtype).to(Dev);
        var proj = (randn([heads * headDim, 48], generator: gen) * 0.3).to(dtype).to(Dev);
        var w = (0.1 * randn([headDim], generator: gen) + (unitOffset ? 0 : 1)).to(dtype).to(Dev).requires_grad_();
        var up = randn([b, t, heads, headDim], generator: gen).to(dtype).to(Dev);

        var x1 = hidden.detach().requires_grad_();
        var q1 = nn.functional.linear(x1, proj).view(b, t, heads, headDim);
        Assert.That(q1.is_contiguous(), Is.True);
        var y1 = RmsNorm.Apply(q1, w, Eps, unitOffset);
        Assert.That(y1.shape, Is.EqualTo(new[] { b, t, heads, headDim }));
        y1.backward([up]);
        var (gx1, gw1) = (x1.grad!.clone(), w.grad!.clone());
        w.grad!.zero_();

        var x2 = hidden.detach().requires_grad_();
        var q2 = nn.functional.linear(x2, proj).view(b, t, heads, headDim);
        var y2 = Reference(q2, w, unitOffset);
        y2.backward([up]);
        Assert.That(FusedOpsReference.WithinUlps(y1, y2, dtype == ScalarType.Float32 ? 8 : 2), Is.True,
            $"forward: relative error {TestEnv.RelativeError(y1, y2):E3}");
        var tol = dtype == ScalarType.Float32 ? 1e-5 : 1e-2;
        TestEnv.AssertClose(gx1, x2.grad!, tol, "dHidden");
        TestEnv.AssertClose(gw1, w.grad!, tol, "dW");

        // A transposed [B, heads, T, head_dim] view (not contiguous) normalises the same rows.
        var yt = RmsNorm.Apply(q1.detach().transpose(1, 2), w.detach(), Eps, unitOffset);
        Assert.That(TestEnv.BitEqual(yt.transpose(1, 2).contiguous(), y1.detach()), Is.True, "transposed view");
    }

    [Test]
    public void GemmaLayerStartsAsThePlainNormalisation()
    {
        using var scope = NewDisposeScope();
        var layer = new RmsNormLayer(300, Eps, device: Dev, unitOffset: true);
        Assert.That(layer.UnitOffset, Is.True);
        Assert.That(layer.weight.abs().max().item<float>(), Is.EqualTo(0f));
        var (x, _) = Inputs(ScalarType.Float32, seed: 15);
        var expected = FusedOpsReference.RmsNorm(x, ones(300).to(Dev), Eps);
        Assert.That(FusedOpsReference.WithinUlps(layer.forward(x), expected, 8), Is.True);
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
    public void CudaMatchesCpu([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype, [Values] bool unitOffset)
    {
        if (DeviceName != "cuda") Assert.Ignore("the CUDA fixture compares CUDA with the CPU");
        using var scope = NewDisposeScope();
        var (x0, w0) = Inputs(dtype, rows: 10, cols: 2051, seed: 5);
        if (unitOffset) w0 = (w0 - 1).to(dtype);
        var up = randn(x0.shape, generator: new Generator(6)).to(dtype);
        Tensor[] Run(Device d)
        {
            var x = x0.to(d).detach().requires_grad_();
            var w = w0.to(d).detach().requires_grad_();
            var y = RmsNorm.Apply(x, w, Eps, unitOffset);
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
