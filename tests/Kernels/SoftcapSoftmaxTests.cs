using NUnit.Framework;
using SlothSharp.Interop;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The soft-capped attention kernels (sloth_softcap_softmax_forward / _backward) against the TorchSharp
/// expressions they replace (<see cref="SoftcapSoftmax.ReferenceForward"/> / <see cref="SoftcapSoftmax.ReferenceBackward"/>)
/// on random score blocks: with and without a mask (broadcast over batch or heads, and a narrow view of a larger
/// mask), odd column counts, rows longer than one CUDA block's threads and than one chunk of registers, a row with no
/// allowed key (NaN), and the arguments the managed API and the exports refuse.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class SoftcapSoftmaxTests(string deviceName) : DeviceFixture(deviceName)
{
    private const double Scale = 0.0625, Cap = 50.0;  // Gemma 2: 1/sqrt(256), attn_logit_softcapping 50

    /// <summary>s0 [b, h, n, c] large enough that the soft-cap bends (|s0 · scale| up to about 100), and dP.</summary>
    private (Tensor S0, Tensor Dp) Block(ScalarType dtype, long b, long h, long n, long c, ulong seed)
    {
        var gen = new Generator(seed);
        var s0 = (randn([b, h, n, c], generator: gen) * 400).to(dtype).to(Dev);
        var dp = randn([b, h, n, c], generator: gen).to(dtype).to(Dev);
        return (s0, dp);
    }

    /// <summary>A random mask [mb, mh, n, c] where every row keeps at least its first key.</summary>
    private Tensor RandomMask(long mb, long mh, long n, long c, ulong seed)
    {
        var allowed = rand([mb, mh, n, c], generator: new Generator(seed)).gt(0.3);
        allowed.narrow(3, 0, 1).fill_(true);
        return allowed.to(Dev);
    }

    /// <summary>float32: ‖Δ‖/‖p‖ ≤ 1e-6 (tanh and exp may differ from PyTorch's by an ulp, the sums' order differs);
    /// 16-bit: each probability within one ulp of the dtype (or 1e-6 absolute, for tiny probabilities).</summary>
    private static void AssertProbsClose(Tensor actual, Tensor expected, string what)
    {
        if (expected.dtype == ScalarType.Float32)
            Assert.That(TestEnv.RelativeError(actual, expected), Is.LessThanOrEqualTo(1e-6), what);
        else
            Assert.That(FusedOpsReference.WithinUlpsOrAbs(actual, expected, 1, 1e-6), Is.True,
                $"{what}: relative error {TestEnv.RelativeError(actual, expected):E3}");
    }

    /// <summary>The gradient: float32 to 1e-5 relative (‖Δ‖/‖g‖; the row sum's order differs), 16-bit to a few ulps of
    /// the dtype overall (one ulp of p or of the row sum moves ds by an ulp, which the chain's roundings carry on).</summary>
    private static void AssertGradClose(Tensor actual, Tensor expected, string what)
    {
        var tol = expected.dtype switch { ScalarType.Float32 => 1e-5, ScalarType.Float16 => 2e-3, _ => 1e-2 };
        TestEnv.AssertClose(actual, expected, tol, what);
    }

    /// <summary>In a 16-bit dtype the kernels round where the expression rounds, so almost every element has the same
    /// bits (a left-out or extra rounding would change a large share); only a float32 ulp of tanh, exp or a row sum
    /// may tip an element's last rounding. float32 has no dtype roundings to check (tolerances above).</summary>
    private static void AssertSameRoundings(Tensor actual, Tensor expected, string what)
    {
        if (expected.dtype == ScalarType.Float32) return;
        Assert.That(EqualFraction(actual, expected), Is.GreaterThanOrEqualTo(0.99), $"{what}: share of equal elements");
    }

    /// <summary>The fraction of elements with the same value (NaN equal to NaN).</summary>
    private static double EqualFraction(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64);
        var e = expected.detach().cpu().to(ScalarType.Float64);
        return (a.eq(e) | a.isnan() & e.isnan()).to(ScalarType.Float64).mean().item<double>();
    }

    [Test, Category("Sanitize")]
    public void ForwardMatchesTheExpression([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
                                           [Values] bool masked)
    {
        using var scope = NewDisposeScope();
        var (s0, _) = Block(dtype, 2, 3, 5, 37, 1);
        var allowed = masked ? RandomMask(2, 1, 5, 37, 2) : null;
        var probs = SoftcapSoftmax.Forward(s0, allowed, Scale, Cap);
        var (_, p32) = SoftcapSoftmax.ReferenceForward(s0, allowed, Scale, Cap);
        Assert.That(probs.dtype, Is.EqualTo(dtype));
        AssertProbsClose(probs, p32.to(dtype), "probs");
        AssertSameRoundings(probs, p32.to(dtype), "probs");
        if (masked)
            Assert.That(probs.masked_select(allowed!.logical_not().expand_as(probs)).eq(0).all().item<bool>(), Is.True, "masked keys get 0");
    }

    /// <summary>Rows longer than one CUDA block's 128 threads and than one 1024-column chunk (the kernel re-reads such
    /// rows), up to 16,384 columns.</summary>
    [Test, Category("Sanitize")]
    public void LongRowsMatchTheExpression([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype,
                                          [Values(129, 1500, 16384)] int cols)
    {
        using var scope = NewDisposeScope();
        var (s0, dp) = Block(dtype, 1, 2, 3, cols, 3);
        var allowed = RandomMask(1, 2, 3, cols, 4);
        AssertProbsClose(SoftcapSoftmax.Forward(s0, allowed, Scale, Cap), SoftcapSoftmax.ReferenceForward(s0, allowed, Scale, Cap).Probs.to(dtype), "probs");
        var (probs, grad) = SoftcapSoftmax.Backward(s0, dp, allowed, Scale, Cap);
        var (eProbs, eGrad) = SoftcapSoftmax.ReferenceBackward(s0, dp, allowed, Scale, Cap);
        AssertProbsClose(probs, eProbs, "backward probs");
        AssertGradClose(grad, eGrad, "grad_scores");
    }

    [Test, Category("Sanitize")]
    public void BackwardMatchesTheExpression([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
                                            [Values] bool masked)
    {
        using var scope = NewDisposeScope();
        var (s0, dp) = Block(dtype, 2, 3, 7, 45, 5);
        var allowed = masked ? RandomMask(1, 3, 7, 45, 6) : null;  // one mask for every batch row, one per head
        var (probs, grad) = SoftcapSoftmax.Backward(s0, dp, allowed, Scale, Cap);
        var (eProbs, eGrad) = SoftcapSoftmax.ReferenceBackward(s0, dp, allowed, Scale, Cap);
        AssertProbsClose(probs, eProbs, "probs");
        AssertGradClose(grad, eGrad, "grad_scores");
        AssertSameRoundings(probs, eProbs, "probs");
        AssertSameRoundings(grad, eGrad, "grad_scores");
        // The forward kernel's probabilities are the backward's (the same code, the same bits).
        Assert.That(TestEnv.BitEqual(SoftcapSoftmax.Forward(s0, allowed, Scale, Cap), probs), Is.True, "forward and backward probs");
    }

    /// <summary>A block's mask is a narrow view of the whole [B, 1, T, L] mask: strided rows, an offset first element.</summary>
    [Test, Category("Sanitize")]
    public void ANarrowViewOfTheMaskIsReadInPlace()
    {
        using var scope = NewDisposeScope();
        var whole = RandomMask(2, 1, 12, 50, 7);
        var view = whole.narrow(2, 4, 5).narrow(3, 9, 33);
        var (s0, dp) = Block(ScalarType.Float32, 2, 4, 5, 33, 8);
        AssertProbsClose(SoftcapSoftmax.Forward(s0, view, Scale, Cap), SoftcapSoftmax.ReferenceForward(s0, view, Scale, Cap).Probs, "probs");
        var (_, grad) = SoftcapSoftmax.Backward(s0, dp, view, Scale, Cap);
        AssertGradClose(grad, SoftcapSoftmax.ReferenceBackward(s0, dp, view.contiguous(), Scale, Cap).GradScores, "grad_scores");
    }

    /// <summary>A row with no allowed key is NaN, as the eager softmax over -inf gives (and its gradient too); the
    /// other rows are unaffected.</summary>
    [Test, Category("Sanitize")]
    public void AFullyMaskedRowIsNaN([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var (s0, dp) = Block(dtype, 1, 2, 4, 21, 9);
        var allowed = RandomMask(1, 1, 4, 21, 10);
        allowed[0, 0, 2] = tensor(false);
        var probs = SoftcapSoftmax.Forward(s0, allowed, Scale, Cap);
        var (_, eProbs) = SoftcapSoftmax.ReferenceForward(s0, allowed, Scale, Cap);
        Assert.That(eProbs[0, TensorIndex.Colon, 2].isnan().all().item<bool>(), Is.True, "the eager path gives NaN");
        Assert.That(probs[0, TensorIndex.Colon, 2].isnan().all().item<bool>(), Is.True, "the masked row");
        var others = tensor(new long[] { 0, 1, 3 }).to(Dev);
        AssertProbsClose(probs.index_select(2, others), eProbs.to(dtype).index_select(2, others), "the other rows");
        var (_, grad) = SoftcapSoftmax.Backward(s0, dp, allowed, Scale, Cap);
        Assert.That(grad[0, TensorIndex.Colon, 2].isnan().all().item<bool>(), Is.True, "the masked row's gradient");
        Assert.That(grad.index_select(2, others).isfinite().all().item<bool>(), Is.True, "the other rows' gradient");
    }

    [Test]
    public void BadArgumentsAreRefused()
    {
        using var scope = NewDisposeScope();
        var (s0, dp) = Block(ScalarType.Float32, 1, 2, 3, 8, 11);
        Assert.That(() => SoftcapSoftmax.Forward(s0.to(ScalarType.Float64), null, Scale, Cap), Throws.ArgumentException.With.Message.Contains("float32, float16 or bfloat16"));
        Assert.That(() => SoftcapSoftmax.Forward(s0.view(2, 3, 8), null, Scale, Cap), Throws.ArgumentException.With.Message.Contains("[B, H, rows, cols]"));
        Assert.That(() => SoftcapSoftmax.Forward(s0.transpose(2, 3), null, Scale, Cap), Throws.ArgumentException.With.Message.Contains("contiguous"));
        Assert.That(() => SoftcapSoftmax.Forward(s0, null, Scale, 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => SoftcapSoftmax.Forward(s0, ones(1, 2, 3, 8).to(Dev), Scale, Cap), Throws.ArgumentException.With.Message.Contains("allowed must be bool"));
        Assert.That(() => SoftcapSoftmax.Forward(s0, ones(1, 2, 3, 7, ScalarType.Bool).to(Dev), Scale, Cap), Throws.ArgumentException.With.Message.Contains("allowed must be bool"));
        Assert.That(() => SoftcapSoftmax.Forward(s0, ones(1, 2, 8, 3, ScalarType.Bool).to(Dev).transpose(2, 3), Scale, Cap), Throws.ArgumentException.With.Message.Contains("contiguous columns"));
        Assert.That(() => SoftcapSoftmax.Backward(s0, dp.to(ScalarType.BFloat16), null, Scale, Cap), Throws.ArgumentException.With.Message.Contains("grad_probs"));
        Assert.That(() => SoftcapSoftmax.Backward(s0, dp.narrow(3, 0, 7), null, Scale, Cap), Throws.ArgumentException.With.Message.Contains("shape of scores"));
    }

    private static readonly nint P = 64;  // a non-null address the native checks never reach

    private static void ExpectInvalid(SlothStatus status, string messagePart)
    {
        Assert.That(status, Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        Assert.That(Native.LastErrorMessage, Does.Contain(messagePart));
    }

    /// <summary>The exports' own checks, before any pointer is read.</summary>
    [Test]
    public void TheExportsValidateEveryArgument()
    {
        if (DeviceName != "cpu") Assert.Ignore("host-side checks: the CPU fixture covers them");
        Native.EnsureLoaded();
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(P, 0, (SlothDtype)7, 1, 1, 1, 4, 0, 0, 0, 1, 50, P, -1, 0), "dtype = 7");
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(0, 0, SlothDtype.F32, 1, 1, 1, 4, 0, 0, 0, 1, 50, P, -1, 0), "scores is NULL");
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(P, 0, SlothDtype.F32, 1, 1, 1, 4, 0, 0, 0, 1, 50, 0, -1, 0), "probs is NULL");
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(P, 0, SlothDtype.F32, 1, 0, 1, 4, 0, 0, 0, 1, 50, P, -1, 0), "heads = 0");
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(P, 0, SlothDtype.F32, 1, 1, 1, 0, 0, 0, 0, 1, 50, P, -1, 0), "cols = 0");
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(P, P, SlothDtype.F32, 1, 1, 1, 4, 0, -1, 0, 1, 50, P, -1, 0), "allowed_head_stride");
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(P, 0, SlothDtype.F32, 1, 1, 1, 4, 0, 0, 0, 1, 0, P, -1, 0), "cap = 0");
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(P, 0, SlothDtype.F32, 1, 1, 1, 4, 0, 0, 0, float.NaN, 50, P, -1, 0), "scale");
        ExpectInvalid(Native.TrySoftcapSoftmaxForward(P, 0, SlothDtype.F32, 1 << 30, 1 << 20, 1 << 20, 4, 0, 0, 0, 1, 50, P, -1, 0), "too large");
        ExpectInvalid(Native.TrySoftcapSoftmaxBackward(P, 0, 0, SlothDtype.Bf16, 1, 1, 1, 4, 0, 0, 0, 1, 50, P, P, -1, 0), "grad_probs is NULL");
        ExpectInvalid(Native.TrySoftcapSoftmaxBackward(P, P, 0, SlothDtype.Bf16, 1, 1, 1, 4, 0, 0, 0, 1, 50, P, 0, -1, 0), "grad_scores is NULL");
        // Nothing to do: no pointer is read.
        Assert.That(Native.TrySoftcapSoftmaxForward(0, 0, SlothDtype.F32, 0, 1, 1, 4, 0, 0, 0, 1, 50, 0, -1, 0), Is.EqualTo(SlothStatus.Ok));
    }

    /// <summary>CUDA against the CPU twin on the same blocks. Their tanh and exp may differ by an ulp and "/ cap" is a
    /// reciprocal product on CUDA (PyTorch's CUDA division by a scalar) but a division on the CPU, so float32 agrees
    /// to rounding and 16-bit dtypes to an ulp of the probabilities almost everywhere: compared by relative error.</summary>
    [Test, Category("Sanitize")]
    public void CudaMatchesCpu([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        if (DeviceName != "cuda") Assert.Ignore("the CUDA fixture compares CUDA with the CPU");
        using var scope = NewDisposeScope();
        var (s0, dp) = Block(dtype, 2, 4, 9, 1100, 12);
        var allowed = RandomMask(2, 1, 9, 1100, 13);
        var (probs, grad) = SoftcapSoftmax.Backward(s0, dp, allowed, Scale, Cap);
        var (cProbs, cGrad) = SoftcapSoftmax.Backward(s0.cpu(), dp.cpu(), allowed.cpu(), Scale, Cap);
        var tol = dtype == ScalarType.Float32 ? (1e-6, 1e-5) : (1e-2, 2e-2);
        Assert.That(TestEnv.RelativeError(probs, cProbs), Is.LessThanOrEqualTo(tol.Item1), "probs");
        Assert.That(TestEnv.RelativeError(grad, cGrad), Is.LessThanOrEqualTo(tol.Item2), "grad_scores");
        Assert.That(TestEnv.RelativeError(SoftcapSoftmax.Forward(s0, allowed, Scale, Cap), cProbs), Is.LessThanOrEqualTo(tol.Item1), "forward");
    }
}
