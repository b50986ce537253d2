using NUnit.Framework;
using SlothSharp.Interop;
using SlothSharp.Losses;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Chunked and fused LM-head cross-entropy against the naive path: loss, dX, dW, db. Runs on the CPU and, in
/// the Gpu category, on CUDA.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class LossTests(string deviceName) : DeviceFixture(deviceName)
{
    public enum Path { Chunked, Fused }

    private static Tensor Run(Path path, Tensor x, Tensor w, Tensor? b, Tensor y, CrossEntropyOptions o) => path == Path.Chunked
        ? ChunkedLinearLoss.CrossEntropy(x, w, b, y, o)
        : FusedLinearCrossEntropy.Apply(x, w, b, y, o);

    /// <summary>Runs the path and the naive reference with the same upstream gradient; compares loss and gradients.</summary>
    private void Compare(Path path, long[] lead, long h, long v, ScalarType dtype, CrossEntropyOptions o, bool bias = true,
                         double tol = 1e-5, ulong seed = 1, bool frozenW = false, double ignoreFraction = 0.2)
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem(lead, h, v, dtype, Dev, seed, ignoreFraction);
        if (frozenW) w.requires_grad_(false);
        var bb = bias ? b : null;
        var upstream = o.Reduction == LossReduction.None ? randn(lead, generator: new Generator(seed + 7)).to(Dev) : null;

        var expected = LossReference.CrossEntropy(x, w, bb, y, o);
        if (upstream is null) expected.backward(); else expected.backward([upstream]);
        var (ex, ew, eb) = (LossReference.Grad(x), LossReference.Grad(w), LossReference.Grad(b));
        LossReference.ZeroGrads(x, w, b);

        var actual = Run(path, x, w, bb, y, o);
        if (upstream is null) actual.backward(); else actual.backward([upstream]);
        var what = $"{path} {dtype} [{string.Join("x", lead)}]x{h}x{v} {o}";
        Assert.That(actual.dtype, Is.EqualTo(ScalarType.Float32), "loss dtype");
        TestEnv.AssertClose(actual, expected, tol, $"loss: {what}");
        TestEnv.AssertClose(x.grad!, ex!, tol, $"dX: {what}");
        if (frozenW) Assert.That(w.grad, Is.Null, "a frozen head gets no dW");
        else TestEnv.AssertClose(w.grad!, ew!, tol, $"dW: {what}");
        if (bias) TestEnv.AssertClose(b.grad!, eb!, tol, $"db: {what}");
    }

    [Test]
    public void Float32ManyChunkSizes([Values] Path path, [Values(1, 7, 64, 1000)] int chunkRows) =>
        Compare(path, [50], 32, 97, ScalarType.Float32, new CrossEntropyOptions { ChunkRows = chunkRows });

    [Test]
    public void ThreeDimensionalHiddenAndByteBudget([Values] Path path) =>
        Compare(path, [3, 17], 24, 130, ScalarType.Float32, new CrossEntropyOptions { ChunkBytes = 130 * 4 * 5 });

    [Test]
    public void Reductions([Values] Path path, [Values] LossReduction reduction) =>
        Compare(path, [40], 16, 67, ScalarType.Float32, new CrossEntropyOptions { Reduction = reduction, ChunkRows = 9 });

    [Test]
    public void Options([Values] Path path, [Values("smoothing", "softcap", "zloss", "scale", "all")] string which)
    {
        var o = which switch
        {
            "smoothing" => new CrossEntropyOptions { LabelSmoothing = 0.1 },
            "softcap" => new CrossEntropyOptions { Softcap = 3.0 },
            "zloss" => new CrossEntropyOptions { ZLoss = 1e-3 },
            "scale" => new CrossEntropyOptions { LogitScale = 1 / 0.7 },
            _ => new CrossEntropyOptions { LabelSmoothing = 0.05, Softcap = 5, ZLoss = 1e-4, LogitScale = 1.3, Reduction = LossReduction.Sum },
        };
        Compare(path, [33], 16, 203, ScalarType.Float32, o with { ChunkRows = 10 });
    }

    [Test]
    public void FrozenHeadComputesNoWeightGradient([Values] Path path) =>
        Compare(path, [20], 16, 50, ScalarType.Float32, new CrossEntropyOptions { ChunkRows = 6 }, frozenW: true);

    [Test]
    public void FusedWeightGradientAccumulatedInFloat32([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype) =>
        Compare(Path.Fused, [64], 32, 101, dtype, new CrossEntropyOptions { ChunkRows = 8, AccumulateWeightGradInFloat32 = true },
            tol: dtype == ScalarType.BFloat16 ? 2e-2 : 1e-5);

    [Test]
    public void NoBias([Values] Path path) =>
        Compare(path, [20], 16, 50, ScalarType.Float32, new CrossEntropyOptions { ChunkRows = 6 }, bias: false);

    /// <summary>bf16/fp16: both paths and the reference round the logits GEMM to 8 (bf16) or 11 (fp16) mantissa bits, but
    /// in different places (the reference rounds full logits once; the paths round per chunk and round dZ before the
    /// gradient GEMMs), so results differ by a few units of the format's rounding: ~2^-8 ≈ 4e-3 relative for bf16.</summary>
    [Test]
    public void HalfPrecision([Values] Path path, [Values(ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype, [Values(64, 203)] int v)
    {
        if (DeviceName == "cpu" && dtype == ScalarType.Float16) Assume.That(false, "fp16 GEMMs are a GPU format");
        Compare(path, [64], 64, v, dtype, new CrossEntropyOptions { ChunkRows = 24, LabelSmoothing = 0.1 },
            tol: dtype == ScalarType.BFloat16 ? 2e-2 : 4e-3);
    }

    [Test]
    public void VocabularyNotAMultipleOfTheVectorWidth([Values] Path path, [Values(1, 3, 9, 1001)] int v) =>
        Compare(path, [12], 8, v, ScalarType.Float32, new CrossEntropyOptions { ChunkRows = 5 });

    [Test]
    public void OneRow([Values] Path path) =>
        Compare(path, [1], 8, 31, ScalarType.Float32, new CrossEntropyOptions(), ignoreFraction: 0);

    [Test]
    public void AllRowsIgnoredGiveZeroLossAndZeroGradients([Values] Path path)
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem([10], 8, 20, ScalarType.Float32, Dev, 3);
        y.fill_(-100);
        var loss = Run(path, x, w, b, y, new CrossEntropyOptions());
        loss.backward();
        Assert.That(loss.item<float>(), Is.EqualTo(0f));
        Assert.That(x.grad!.abs().max().item<float>(), Is.EqualTo(0f));
        Assert.That(w.grad!.abs().max().item<float>(), Is.EqualTo(0f));
    }

    [Test]
    public void GradientAccumulationWithAGlobalNormalizer([Values] Path path)
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem([40], 16, 50, ScalarType.Float32, Dev, 4);
        var total = (double)y.ne(-100).sum().item<long>();
        LossReference.CrossEntropy(x, w, b, y, new CrossEntropyOptions()).backward();
        var (ex, ew) = (LossReference.Grad(x)!, LossReference.Grad(w)!);
        LossReference.ZeroGrads(x, w, b);
        // Two micro-batches of 20 rows each, normalized by the global token count.
        var o = new CrossEntropyOptions { Normalizer = total, ChunkRows = 7 };
        var l1 = Run(path, x[..20], w, b, y[..20], o);
        l1.backward();
        var l2 = Run(path, x[20..], w, b, y[20..], o);
        l2.backward();
        TestEnv.AssertClose(x.grad!, ex, 1e-5, "dX");
        TestEnv.AssertClose(w.grad!, ew, 1e-5, "dW accumulated over two steps");
    }

    [Test]
    public void OutOfRangeLabelIsAClearError([Values] Path path, [Values(50L, -3L)] long bad)
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem([10], 8, 50, ScalarType.Float32, Dev, 5);
        y[4] = tensor(bad);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Run(path, x, w, b, y, new CrossEntropyOptions()))!;
        Assert.That(ex.Message, Does.Contain($"label {bad}"));
    }

    [Test]
    public void BadInputsAreRejectedBeforeAnyNativeCall([Values] Path path)
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem([10], 8, 50, ScalarType.Float32, Dev, 6);
        Assert.Throws<ArgumentException>(() => Run(path, x, w[.., ..7], b, y, new CrossEntropyOptions()), "H mismatch");
        Assert.Throws<ArgumentException>(() => Run(path, x, w.to(ScalarType.Float64), b, y, new CrossEntropyOptions()), "dtype mismatch");
        Assert.Throws<ArgumentException>(() => Run(path, x, w, b, y.to(ScalarType.Int32), new CrossEntropyOptions()), "int32 labels");
        Assert.Throws<ArgumentException>(() => Run(path, x, w, b[..5], y, new CrossEntropyOptions()), "bias size");
        Assert.Throws<ArgumentException>(() => Run(path, x, w, b, y, new CrossEntropyOptions { Reduction = LossReduction.Sum, Normalizer = 3 }), "normalizer with sum");
        Assert.Throws<ArgumentOutOfRangeException>(() => Run(path, x, w, b, y, new CrossEntropyOptions { LabelSmoothing = 1.5 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Run(path, x, w, b, y, new CrossEntropyOptions { ChunkRows = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Run(path, x, w, b, y, new CrossEntropyOptions { GemmTuning = (SlothSharp.Ops.GemmTuning)9 }));
    }

    [Test, Category("Sanitize")]
    public void KernelDirectlyAgainstTheReference([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(9);
        var logits = (randn(37, 1003, generator: gen) * 3).to(dtype).to(Dev);
        var labels = randint(0, 1003, [37], generator: gen);
        labels[5] = tensor(-100L);
        labels = labels.to(Dev);
        var o = new CrossEntropyOptions { LabelSmoothing = 0.1, ZLoss = 1e-3 };
        var z = logits.to(ScalarType.Float32).detach().requires_grad_();
        var perRow = nn.functional.cross_entropy(z, labels, ignore_index: -100, reduction: nn.Reduction.None, label_smoothing: 0.1)
                     + where(labels.ne(-100), z.logsumexp(-1).square() * 1e-3, zeros(37, device: Dev));
        var scale = rand(37, generator: gen).to(Dev);
        perRow.backward([scale]);
        var loss = empty(37, ScalarType.Float32, Dev);
        var lse = empty(37, ScalarType.Float32, Dev);
        var g = logits.clone();
        CrossEntropyChunk.Compute(g, labels, o, scale, 0f, true, loss, lse);
        TestEnv.AssertClose(loss, perRow.detach(), 1e-5, "loss");
        TestEnv.AssertClose(g, z.grad!.to(dtype), dtype == ScalarType.Float32 ? 1e-5 : 8e-3, "in-place gradient");
        Assert.That(g[5].abs().max().to(ScalarType.Float32).item<float>(), Is.Zero, "ignored row");
    }
}
