using NUnit.Framework;
using SlothSharp.Interop;
using SlothSharp.Losses;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>sloth_gemm's argument checks (any machine) and <see cref="TunedGemm"/> against TorchSharp's matmul on CUDA:
/// every transpose combination, strided outputs, beta = 1 accumulation, tuned and untuned choices, f16 and bf16.</summary>
public class TunedGemmTests
{
    private static SlothStatus Call(int ta = 0, int tb = 0, long m = 4, long n = 4, long k = 4, long lda = 4, long ldb = 4,
                                    long ldc = 4, float alpha = 1, float beta = 0, SlothDtype dtype = SlothDtype.Bf16,
                                    long workspaceBytes = 0, int tune = 0, int device = 0, nint a = 16, nint b = 16, nint c = 16) =>
        Native.TryGemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, dtype, 0, workspaceBytes, tune, device, 0);

    [Test]
    public void BadArgumentsNameTheField()
    {
        (Func<SlothStatus> call, string field)[] cases =
        [
            (() => Call(ta: 2), "trans_a"),
            (() => Call(tune: 3), "tune = 3"),
            (() => Call(tune: -1), "tune = -1"),
            (() => Call(dtype: SlothDtype.F32), "f32"),
            (() => Call(m: 0), "m = 0"),
            (() => Call(k: -1), "k = -1"),
            (() => Call(lda: 3), "lda = 3"),
            (() => Call(tb: 1, ldb: 3), "ldb = 3"),
            (() => Call(ldc: 2), "ldc = 2"),
            (() => Call(alpha: float.NaN), "alpha"),
            (() => Call(workspaceBytes: -5), "workspace_bytes"),
            (() => Call(workspaceBytes: 1024), "workspace"),
            (() => Call(a: 0), "a is NULL"),
            (() => Call(device: -2), "device = -2"),
        ];
        foreach (var (call, field) in cases)
        {
            Assert.That(call(), Is.EqualTo(SlothStatus.ErrorInvalidArgument), field);
            Assert.That(Native.LastErrorMessage, Does.Contain("sloth_gemm").And.Contain(field), field);
        }
    }

    [Test]
    public void CpuIsRefusedAsUnsupported()
    {
        Assert.That(Call(device: -1), Is.EqualTo(SlothStatus.ErrorUnsupported));
        Assert.That(Native.LastErrorMessage, Does.Contain("CUDA devices only"));
    }

    [Test]
    public void TensorsItCannotTakeFallBackOrThrow()
    {
        using var scope = NewDisposeScope();
        var a = randn(3, 4).to(ScalarType.BFloat16);
        var b = randn(4, 5).to(ScalarType.BFloat16);
        var c = empty(3, 5, ScalarType.BFloat16);
        Assert.That(TunedGemm.TryMatMulInto(a, b, c), Is.False, "CPU tensors: the caller's own GEMM");
        Assert.That(() => TunedGemm.MatMulInto(a, b, c), Throws.ArgumentException.With.Message.Contains("CUDA"));
        Assert.That(() => TunedGemm.MatMulInto(a, b, empty(3, 6, ScalarType.BFloat16)), Throws.ArgumentException.With.Message.Contains("do not chain"));
        Assert.That(() => TunedGemm.MatMulInto(a.to(ScalarType.Float32), b, c), Throws.ArgumentException.With.Message.Contains("bfloat16"));
        Assert.That(() => TunedGemm.TryMatMulInto(a, b, c, tuning: (GemmTuning)7), Throws.InstanceOf<ArgumentOutOfRangeException>(),
            "an undefined tuning mode is the caller's bug, whatever the tensors");
    }

    [Test]
    public void TuningReportIsReadable() => Assert.That(() => TunedGemm.TuningReport(), Throws.Nothing);

    [Test]
    public void ForgettingWorksWithNothingKept() => Assert.That(() => TunedGemm.ForgetTuning(), Throws.Nothing);

    [Test]
    public void TuningModesAreTheHeadersValues()
    {
        Assert.That((int)GemmTuning.None, Is.EqualTo(0));
        Assert.That((int)GemmTuning.Heuristic, Is.EqualTo(1));
        Assert.That((int)GemmTuning.Wide, Is.EqualTo(2));
    }
}

[Category("Gpu")]
public class TunedGemmGpuTests
{
    [SetUp]
    public void RequireCuda()
    {
        TestEnv.RequireCuda();
        // A machine whose cuBLASLt cannot be opened is not a failure of this code: say so rather than pass.
        using var scope = NewDisposeScope();
        var t = ones(2, 2, ScalarType.BFloat16, CUDA);
        Assume.That(TunedGemm.TryMatMulInto(t, t, empty_like(t)), Is.True, () => $"cuBLASLt unavailable: {TunedGemm.UnavailableReason}");
    }

    private static Tensor Rand(long r, long c, ScalarType dtype, ulong seed) =>
        randn([r, c], generator: new Generator(seed)).to(dtype).to(CUDA);

    /// <summary>op(A) · op(B) for every transpose pair, odd sizes, row-strided C; against TorchSharp's matmul of the same
    /// values (both accumulate in float32; the results may differ by the rounding of C and the summation order).</summary>
    [Test]
    public void MatchesTorchMatmul([Values(ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
                                   [Values(false, true)] bool transA, [Values(false, true)] bool transB,
                                   [Values] GemmTuning tuning)
    {
        using var scope = NewDisposeScope();
        const long m = 77, n = 136, k = 264;
        var a = transA ? Rand(k, m, dtype, 1).t() : Rand(m, k, dtype, 1);
        var b = transB ? Rand(n, k, dtype, 2).t() : Rand(k, n, dtype, 2);
        var big = full([m, n + 24], float.NaN, dtype, CUDA);
        var c = big.narrow(1, 8, n);  // row stride n + 24: the GEMM must write only its columns
        TunedGemm.MatMulInto(a, b, c, tuning: tuning);
        var expected = a.matmul(b);
        TestEnv.AssertClose(c.to(ScalarType.Float32), expected.to(ScalarType.Float32), dtype == ScalarType.BFloat16 ? 1e-2 : 2e-3, "C");
        Assert.That(big.narrow(1, 0, 8).isnan().all().item<bool>() && big.narrow(1, n + 8, 16).isnan().all().item<bool>(), Is.True,
            "columns outside C untouched");
    }

    /// <summary>A shape's first call takes cuBLASLt's heuristic choice and its second (beta = 0) tunes; beta = 1 adds to C
    /// (the dW accumulation of the fused loss) with the kept choice, alpha scales the product; the report names the
    /// shape.</summary>
    [Test]
    public void TunesOnTheSecondCallAndAccumulatesWithBeta()
    {
        using var scope = NewDisposeScope();
        var a = Rand(512, 640, ScalarType.BFloat16, 3);
        var b = Rand(640, 384, ScalarType.BFloat16, 4);
        var c = empty(512, 384, ScalarType.BFloat16, CUDA);
        const string shape = "m=512 n=384 k=640 lda=640 ldb=384 ldc=384";
        TunedGemm.MatMulInto(a, b, c, beta: 0, tuning: GemmTuning.Heuristic);
        Assert.That(TunedGemm.TuningReport(), Does.Contain(shape + ": untuned"), "first call: the heuristic's choice");
        TunedGemm.MatMulInto(a, b, c, beta: 0, tuning: GemmTuning.Heuristic);
        Assert.That(TunedGemm.TuningReport(), Does.Contain(shape + ": ").And.Contain("candidates, chose"), "second call: tuned");
        var first = c.clone();
        TunedGemm.MatMulInto(a, b, c, alpha: 0.5f, beta: 1, tuning: GemmTuning.Heuristic);
        var expected = first.to(ScalarType.Float32) + 0.5 * a.to(ScalarType.Float32).matmul(b.to(ScalarType.Float32));
        TestEnv.AssertClose(c.to(ScalarType.Float32), expected, 1e-2, "C after beta = 1");
        TunedGemm.MatMulInto(a, b, c, beta: 0, tuning: GemmTuning.Heuristic);
        Assert.That(TestEnv.BitEqual(c, first), Is.True, "the kept choice gives the same bits again");
    }

    /// <summary>The wide search (heuristic list plus variants) tunes on the second call, lists more candidates than the
    /// heuristic alone, reports its configuration, and its choice computes the same product; forgetting drops the
    /// shape, whose next call is untuned again.</summary>
    [Test]
    public void WideSearchTunesAndForgetStartsAfresh()
    {
        using var scope = NewDisposeScope();
        var a = Rand(768, 1024, ScalarType.BFloat16, 21);
        var b = Rand(1024, 640, ScalarType.BFloat16, 22).t().contiguous().t();  // a transposed view
        var c = empty(768, 640, ScalarType.BFloat16, CUDA);
        const string shape = "bf16 NT m=768 n=640 k=1024";
        TunedGemm.ForgetTuning();
        TunedGemm.MatMulInto(a, b, c, tuning: GemmTuning.Heuristic);
        TunedGemm.MatMulInto(a, b, c, tuning: GemmTuning.Heuristic);
        var heuristicCount = Candidates(TunedGemm.TuningReport(), shape);
        TunedGemm.ForgetTuning();
        Assert.That(TunedGemm.TuningReport(), Does.Not.Contain(shape), "forgotten");
        TunedGemm.MatMulInto(a, b, c, tuning: GemmTuning.Wide);
        Assert.That(Line(TunedGemm.TuningReport(), shape), Does.Contain("untuned"), "first call after forgetting: the heuristic's choice");
        TunedGemm.MatMulInto(a, b, c, tuning: GemmTuning.Wide);
        var line = Line(TunedGemm.TuningReport(), shape);
        Assert.That(line, Does.Contain("(wide)").And.Contain(" tile ").And.Contain(" cluster "), line);
        Assert.That(Candidates(TunedGemm.TuningReport(), shape), Is.GreaterThan(heuristicCount).And.LessThanOrEqualTo(SlothConstants.GemmWideCandidates), line);
        TestEnv.AssertClose(c.to(ScalarType.Float32), a.to(ScalarType.Float32).matmul(b.to(ScalarType.Float32)), 1e-2, "C from the wide choice");

        static string Line(string report, string shape) => report.Split('\n').Single(l => l.Contains(shape));
        static int Candidates(string report, string shape)
        {
            var line = Line(report, shape);
            var at = line.IndexOf(" candidates", StringComparison.Ordinal);
            return int.Parse(line[(line.LastIndexOf(' ', at - 1) + 1)..at]);
        }
    }

    /// <summary>A shape kept from calls with the 32 MiB workspace still runs when a later call offers none (the kept
    /// choice may need split-K space: that call takes the heuristic's choice for its own workspace).</summary>
    [Test]
    public void ACallWithoutWorkspaceStillRuns()
    {
        using var scope = NewDisposeScope();
        var a = Rand(96, 40960, ScalarType.BFloat16, 11);
        var b = Rand(40960, 256, ScalarType.BFloat16, 12);
        var c = empty(96, 256, ScalarType.BFloat16, CUDA);
        for (var i = 0; i < 2; i++) TunedGemm.MatMulInto(a, b, c);  // kept, then tuned, with the workspace
        var expected = c.clone();
        var status = Native.TryGemm(0, 0, 96, 256, 40960, 1, TensorInterop.DataPtr(a), 40960, TensorInterop.DataPtr(b), 256, 0,
            TensorInterop.DataPtr(c), 256, SlothDtype.Bf16, 0, 0, 1, 0, 0);
        Assert.That(status, Is.EqualTo(SlothStatus.Ok), Native.LastErrorMessage);
        TestEnv.AssertClose(c.to(ScalarType.Float32), expected.to(ScalarType.Float32), 1e-2, "C without workspace");
    }

    /// <summary>The fused loss through the tuned GEMMs against the same loss through TorchSharp's matmul.</summary>
    [Test]
    public void FusedLossMatchesTorchGemms()
    {
        using var scope = NewDisposeScope();
        var x0 = Rand(700, 256, ScalarType.BFloat16, 5);
        var w0 = (Rand(3000, 256, ScalarType.BFloat16, 6) * 0.05).to(ScalarType.BFloat16);
        var y = randint(0, 3000, [700], generator: new Generator(7)).to(CUDA);
        var options = new CrossEntropyOptions { ChunkRows = 256 };  // three chunks: beta = 0, then two beta = 1 dW GEMMs
        (Tensor loss, Tensor dx, Tensor dw) Run(bool tuned)
        {
            var saved = FusedCrossEntropyTuning.UseTunedGemm;
            FusedCrossEntropyTuning.UseTunedGemm = tuned;
            try
            {
                var x = x0.detach().requires_grad_();
                var w = w0.detach().requires_grad_();
                var loss = FusedLinearCrossEntropy.Apply(x, w, null, y, options);
                loss.backward();
                return (loss.detach(), x.grad!, w.grad!);
            }
            finally { FusedCrossEntropyTuning.UseTunedGemm = saved; }
        }
        var (l1, dx1, dw1) = Run(true);
        var (l0, dx0, dw0) = Run(false);
        Assert.That(l1.item<float>(), Is.EqualTo(l0.item<float>()).Within(1e-4).Percent);
        TestEnv.AssertClose(dx1.to(ScalarType.Float32), dx0.to(ScalarType.Float32), 1e-2, "dX");
        TestEnv.AssertClose(dw1.to(ScalarType.Float32), dw0.to(ScalarType.Float32), 1e-2, "dW");
        Assert.That(TunedGemm.UnavailableReason, Is.Null);
    }
}
