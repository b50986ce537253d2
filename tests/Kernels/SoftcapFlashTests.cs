using NUnit.Framework;
using SlothSharp.Interop;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The one-pass soft-capped attention kernels (sloth_softcap_flash_*, <see cref="SoftcapAttentionMethod.Flash"/>).
/// On the CPU their float32 twin against transformers' eager expression through autograd (outputs and the gradients of
/// q and of the un-expanded k and v; float32, bf16, f16; causal, sliding-window, padding and no masks; T ≠ L; rows
/// with no allowed key). On CUDA the tensor-core kernels against the blocks path on CUDA and against the CPU twin
/// (bf16 and f16, head sizes 64, 128 and 256, row and key counts that are not multiples of the 64-wide tiles), and
/// two calls giving the same bits.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class SoftcapFlashTests(string deviceName) : DeviceFixture(deviceName)
{
    private static Tensor Eager(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap)
    {
        var scores = (q.matmul(k.transpose(2, 3)) * scale / cap).tanh() * cap;
        if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        return scores.softmax(-1, ScalarType.Float32).to(q.dtype).matmul(v);
    }

    public enum MaskKind { None, Causal, Window, Padding }

    /// <summary>Query i sits at position L − T + i; causal: keys ≤ position; window: and > position − 5; padding: batch
    /// row 1 cannot see its first three keys. Every row keeps its own key. On the CPU, moved to the device.</summary>
    private Tensor? Mask(MaskKind kind, long b, long t, long l)
    {
        if (kind == MaskKind.None) return null;
        var qpos = arange(l - t, l, 1, ScalarType.Int64).view(1, 1, t, 1);
        var kpos = arange(0, l, 1, ScalarType.Int64).view(1, 1, 1, l);
        var allowed = kpos.le(qpos).expand(b, 1, t, l).clone();
        if (kind == MaskKind.Window) allowed = allowed & kpos.gt(qpos - 5);
        if (kind == MaskKind.Padding) allowed[1, 0, TensorIndex.Colon, TensorIndex.Slice(0, 3)] = tensor(false);
        return (allowed | kpos.eq(qpos).expand(b, 1, t, l)).to(Dev);
    }

    private sealed record Run(Tensor Y, Tensor[] Grads);

    /// <summary>Output and gradients of q and the un-expanded k0, v0 ([B, KV, L, D], expanded to H heads) through the
    /// given attention, all in float32 on the CPU.</summary>
    private static Run Through(Func<Tensor, Tensor, Tensor, Tensor> attention, Tensor q, Tensor k0, Tensor v0, long heads, Tensor dout)
    {
        foreach (var x in new[] { q, k0, v0 }) x.grad = null;
        var (b, kv, l, d) = (k0.shape[0], k0.shape[1], k0.shape[2], k0.shape[3]);
        Tensor Expand(Tensor x) => x.unsqueeze(2).expand(b, kv, heads / kv, l, d).reshape(b, heads, l, d);
        var y = attention(q, Expand(k0), Expand(v0));
        y.backward([dout]);
        Tensor F(Tensor x) => x.detach().to(ScalarType.Float32).cpu();
        return new Run(F(y), [F(q.grad!), F(k0.grad!), F(v0.grad!)]);
    }

    private (Tensor Q, Tensor K0, Tensor V0, Tensor Dout) Inputs(ScalarType dtype, long b, long h, long kv, long t, long l, long d, int seed)
    {
        manual_seed(seed);
        var q = (randn(b, h, t, d) * 2).to(dtype).to(Dev).requires_grad_();
        var k0 = (randn(b, kv, l, d) * 2).to(dtype).to(Dev).requires_grad_();
        var v0 = randn(b, kv, l, d).to(dtype).to(Dev).requires_grad_();
        var dout = randn(b, h, t, d).to(dtype).to(Dev);
        return (q, k0, v0, dout);
    }

    private bool FlashRunsHere(ScalarType dtype, long d)
    {
        using var probe = zeros([1, 1, 1, d], dtype, Dev);
        return SoftcapAttention.FlashSupported(probe, probe, probe);
    }

    private static void AssertRunsClose(Run actual, Run expected, double outTol, double gradTol)
    {
        Assert.That(TestEnv.RelativeError(actual.Y, expected.Y), Is.LessThanOrEqualTo(outTol), "output");
        string[] names = ["dq", "dk", "dv"];
        for (var i = 0; i < 3; i++) TestEnv.AssertClose(actual.Grads[i], expected.Grads[i], gradTol, names[i]);
    }

    [TestCase(ScalarType.Float32, 16, MaskKind.Causal, 23, 29)]
    [TestCase(ScalarType.Float32, 16, MaskKind.None, 23, 29)]
    [TestCase(ScalarType.Float32, 32, MaskKind.Window, 29, 29)]
    [TestCase(ScalarType.Float32, 16, MaskKind.Padding, 9, 40)]
    [TestCase(ScalarType.BFloat16, 64, MaskKind.Causal, 70, 70)]
    [TestCase(ScalarType.BFloat16, 128, MaskKind.Padding, 37, 80)]
    [TestCase(ScalarType.BFloat16, 256, MaskKind.Window, 65, 65)]
    [TestCase(ScalarType.Float16, 64, MaskKind.None, 50, 130)]
    [TestCase(ScalarType.Float16, 256, MaskKind.Causal, 77, 77)]
    public void MatchesTheEagerPathAndItsGradients(ScalarType dtype, int d, MaskKind kind, int t, int l)
    {
        if (!FlashRunsHere(dtype, d)) Assert.Ignore($"the flash kernels do not run for {dtype}, D = {d} on {DeviceName}");
        using var scope = NewDisposeScope();
        const long b = 2, heads = 4, kv = 2;
        const double cap = 5.0;
        var scale = 1 / Math.Sqrt(d);
        var (q, k0, v0, dout) = Inputs(dtype, b, heads, kv, t, l, d, 21);
        var allowed = Mask(kind, b, t, l);
        var expected = Through((q1, k1, v1) => Eager(q1, k1, v1, allowed, scale, cap), q, k0, v0, heads, dout);
        var actual = Through((q1, k1, v1) => SoftcapAttention.Apply(q1, k1, v1, allowed, scale, cap, SoftcapAttentionMethod.Flash), q, k0, v0, heads, dout);
        var (outTol, gradTol) = dtype == ScalarType.Float32 ? (2e-6, 2e-5) : (2e-2, 3e-2);
        AssertRunsClose(actual, expected, outTol, gradTol);
    }

    /// <summary>A row with no allowed key: what autograd gives on the eager path — a NaN output row, dq = 0 for the row
    /// and dk untouched (masked_fill's backward zeroes its score gradients), dv NaN for its (batch, head); the same NaNs
    /// exactly and every other value as eager.</summary>
    [Test, Category("Sanitize")]
    public void RowsWithoutAnAllowedKeyAreNaNAsOnTheEagerPath([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        if (!FlashRunsHere(dtype, 16)) Assert.Ignore($"the flash kernels do not run for {dtype} on {DeviceName}");
        using var scope = NewDisposeScope();
        const long b = 2, h = 2, t = 11, l = 13, d = 16;
        var (q, k0, v0, dout) = Inputs(dtype, b, h, h, t, l, d, 22);
        var allowed = Mask(MaskKind.Causal, b, t, l)!.clone();
        allowed[1, 0, 4, TensorIndex.Colon] = tensor(false);  // batch row 1, query 4: nothing
        var expected = Through((q1, k1, v1) => Eager(q1, k1, v1, allowed, 0.25, 5), q, k0, v0, h, dout);
        var actual = Through((q1, k1, v1) => SoftcapAttention.Apply(q1, k1, v1, allowed, 0.25, 5, SoftcapAttentionMethod.Flash), q, k0, v0, h, dout);
        var tensors = new[] { (actual.Y, expected.Y, "output") }
            .Concat(actual.Grads.Zip(expected.Grads, new[] { "dq", "dk", "dv" }).Select(x => (x.First, x.Second, x.Third)));
        Assert.That(expected.Y.isnan().any().item<bool>() && expected.Grads[2].isnan().any().item<bool>(), Is.True, "eager: NaN output and dv");
        var tol = dtype == ScalarType.Float32 ? 2e-5 : 3e-2;
        foreach (var (a, e, what) in tensors)
        {
            Assert.That(TestEnv.BitEqual(a.isnan(), e.isnan()), Is.True, $"{what}: NaN pattern");
            var finite = e.isnan().logical_not();
            Assert.That(TestEnv.RelativeError(a.masked_select(finite), e.masked_select(finite)), Is.LessThanOrEqualTo(tol), what);
        }
    }

    /// <summary>CUDA only: the tensor-core kernels against the blocks path on CUDA (the eager roundings) and against
    /// their CPU twin, for the head sizes the kernels take and odd row/key counts.</summary>
    [Test]
    public void CudaMatchesTheBlocksPathAndTheCpuTwin([Values(ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
                                                      [Values(64, 128, 256)] int d,
                                                      [Values(MaskKind.Causal, MaskKind.Padding, MaskKind.None)] MaskKind kind)
    {
        if (DeviceName != "cuda") Assert.Ignore("CUDA against the CPU twin");
        if (!FlashRunsHere(dtype, d)) Assert.Ignore($"the flash kernels do not run on this GPU for {dtype}, D = {d}");
        using var scope = NewDisposeScope();
        const long b = 2, heads = 4, kv = 2, t = 77, l = 93;
        const double cap = 50.0;
        var scale = 1 / Math.Sqrt(d);
        var (q, k0, v0, dout) = Inputs(dtype, b, heads, kv, t, l, d, 23);
        var allowed = Mask(kind, b, t, l);
        var flash = Through((q1, k1, v1) => SoftcapAttention.Apply(q1, k1, v1, allowed, scale, cap, SoftcapAttentionMethod.Flash), q, k0, v0, heads, dout);
        var blocks = Through((q1, k1, v1) => SoftcapAttention.Apply(q1, k1, v1, allowed, scale, cap, SoftcapAttentionMethod.Blocks), q, k0, v0, heads, dout);
        // The blocks path rounds the soft-capped scores to the dtype before its softmax (the eager expression): in bf16
        // (8 bits of mantissa, scores up to the cap of 50) that moves a probability by up to ~20%, so the two differ by
        // ~1.5% of the output's norm there (the first GPU run: 1.3-1.7% at every D and mask); f16 keeps 3 more bits.
        var bf16 = dtype == ScalarType.BFloat16;
        AssertRunsClose(flash, blocks, bf16 ? 3e-2 : 1e-2, bf16 ? 6e-2 : 3e-2);
        // The CPU twin on the same inputs (its float32 math, the same roundings before each tensor-core product).
        Tensor Cpu(Tensor x) => x.detach().cpu().requires_grad_(x.requires_grad);
        var twin = Through((q1, k1, v1) => SoftcapAttention.Apply(q1, k1, v1, allowed?.cpu(), scale, cap, SoftcapAttentionMethod.Flash),
            Cpu(q), Cpu(k0), Cpu(v0), heads, dout.cpu());
        AssertRunsClose(flash, twin, 1e-2, 2e-2);
    }

    /// <summary>Two calls give the same bits (no atomics); a small shape, also run under the sanitizers.</summary>
    [Test, Category("Sanitize")]
    public void TwoCallsGiveTheSameBits([Values(ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype, [Values(64, 256)] int d)
    {
        if (!FlashRunsHere(dtype, d)) Assert.Ignore($"the flash kernels do not run for {dtype}, D = {d} on {DeviceName}");
        using var scope = NewDisposeScope();
        const long b = 1, heads = 2, kv = 1, t = 70, l = 70;
        var (q, k0, v0, dout) = Inputs(dtype, b, heads, kv, t, l, d, 24);
        var allowed = Mask(MaskKind.Causal, b, t, l);
        Run Once() => Through((q1, k1, v1) => SoftcapAttention.Apply(q1, k1, v1, allowed, 0.0625, 50, SoftcapAttentionMethod.Flash), q, k0, v0, heads, dout);
        var first = Once();
        var second = Once();
        Assert.That(TestEnv.BitEqual(first.Y, second.Y), Is.True, "output");
        for (var i = 0; i < 3; i++) Assert.That(TestEnv.BitEqual(first.Grads[i], second.Grads[i]), Is.True, $"gradient {i}");
    }

    /// <summary>Where the kernels run: on the CPU every float dtype; on CUDA bf16 and f16 with D a multiple of 16 up to
    /// 256 (float32 and other sizes go to the blocks path under Auto, and Flash refuses them by name).</summary>
    [Test]
    public void FlashSupportAndRefusals()
    {
        using var scope = NewDisposeScope();
        var f32 = zeros([1, 1, 4, 16], ScalarType.Float32, Dev);
        Assert.That(SoftcapAttention.FlashSupported(f32, f32, f32), Is.EqualTo(DeviceName == "cpu"), "float32");
        var big = zeros([1, 1, 4, 264], ScalarType.BFloat16, Dev);
        Assert.That(SoftcapAttention.FlashSupported(big, big, big), Is.False, "D > 256");
        Assert.That(() => SoftcapAttention.Apply(big, big, big, null, 1, 5, SoftcapAttentionMethod.Flash),
            Throws.ArgumentException.With.Message.Contains("do not run"));
        Assert.That(SoftcapAttention.Apply(big, big, big, null, 1, 5, SoftcapAttentionMethod.Auto).shape, Is.EqualTo(big.shape), "Auto falls back");
        if (DeviceName == "cuda")
        {
            var odd = zeros([1, 1, 4, 40], ScalarType.BFloat16, Dev);
            Assert.That(SoftcapAttention.FlashSupported(odd, odd, odd), Is.False, "D = 40 on CUDA");
        }
    }

    /// <summary>The exports refuse bad arguments by name (host pointers with device -1 only).</summary>
    [Test]
    public void ExportsRefuseBadArguments()
    {
        if (DeviceName != "cpu") Assert.Ignore("validation runs on host pointers");
        using var scope = NewDisposeScope();
        var x = zeros([1, 1, 4, 16]);
        var lse = zeros([1, 1, 4]);
        nint P(Tensor t) => TensorInterop.DataPtr(t);
        SlothStatus Forward(long d, float cap) => Native.TrySoftcapFlashForward(P(x), P(x), P(x), 0, SlothDtype.F32, 1, 1, 4, 4, d, 0, 0, 0,
            0.25f, cap, P(x), P(lse), -1, 0);
        Assert.That(Forward(16, 5), Is.EqualTo(SlothStatus.Ok));
        Assert.That(Forward(0, 5), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        Assert.That(Native.LastErrorMessage, Does.Contain("head_dim"));
        Assert.That(Forward(300, 5), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        Assert.That(Forward(16, 0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        Assert.That(Native.LastErrorMessage, Does.Contain("cap"));
        Assert.That(Native.TrySoftcapFlashForward(0, P(x), P(x), 0, SlothDtype.F32, 1, 1, 4, 4, 16, 0, 0, 0, 0.25f, 5, P(x), P(lse), -1, 0),
            Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        Assert.That(Native.LastErrorMessage, Does.Contain("q"));
    }
}
