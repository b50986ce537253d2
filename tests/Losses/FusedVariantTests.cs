using NUnit.Framework;
using SlothSharp.Losses;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Every tuning knob of the fused cross-entropy (rows per chunk, float32 dW accumulation, byte budget) gives
/// the naive reference's loss and gradients, across reductions, dtypes and ignore_index-heavy batches. The benchmark's
/// ce-sweep suite times these same variants on the GPU, so each one it can pick must be right here first.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
[NonParallelizable]  // tests flip FusedCrossEntropyTuning's process-wide switches and count its hand-offs
public class FusedVariantTests(string deviceName) : DeviceFixture(deviceName)
{
    private void Compare(long n, long h, long v, ScalarType dtype, CrossEntropyOptions o, double ignoreFraction, double tol, ulong seed = 5)
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem([n], h, v, dtype, Dev, seed, ignoreFraction);
        var upstream = o.Reduction == LossReduction.None ? randn([n], generator: new Generator(seed + 3)).to(Dev) : null;
        var expected = LossReference.CrossEntropy(x, w, b, y, o);
        if (upstream is null) expected.backward(); else expected.backward([upstream]);
        var (ex, ew, eb) = (LossReference.Grad(x), LossReference.Grad(w), LossReference.Grad(b));
        LossReference.ZeroGrads(x, w, b);

        var actual = FusedLinearCrossEntropy.Apply(x, w, b, y, o);
        if (upstream is null) actual.backward(); else actual.backward([upstream]);
        var what = $"{dtype} {n}x{h}x{v} ignored {ignoreFraction} {o}";
        TestEnv.AssertClose(actual, expected, tol, $"loss: {what}");
        TestEnv.AssertClose(x.grad!, ex!, tol, $"dX: {what}");
        TestEnv.AssertClose(w.grad!, ew!, tol, $"dW: {what}");
        TestEnv.AssertClose(b.grad!, eb!, tol, $"db: {what}");
        Assert.That(x.grad!.isfinite().all().item<bool>() && w.grad!.isfinite().all().item<bool>(), Is.True, $"finite gradients: {what}");
    }

    [Test]
    public void ChunkRowsAndWeightGradPrecision([Values(1, 5, 48, 1000)] int rows, [Values] bool fp32dW,
                                                [Values] LossReduction reduction)
    {
        Compare(48, 16, 77, ScalarType.Float32,
            new CrossEntropyOptions { ChunkRows = rows, AccumulateWeightGradInFloat32 = fp32dW, Reduction = reduction },
            ignoreFraction: 0.2, tol: 1e-5);
    }

    [Test]
    public void IgnoreIndexHeavyBatches([Values(0.0, 0.9, 0.98)] double ignored, [Values(3, 64)] int rows, [Values] bool fp32dW)
    {
        Compare(64, 16, 53, ScalarType.Float32,
            new CrossEntropyOptions { ChunkRows = rows, AccumulateWeightGradInFloat32 = fp32dW }, ignored, tol: 1e-5);
    }

    /// <summary>bf16/fp16 round per chunk: the tolerance is a few units of the format's rounding (see LossTests.HalfPrecision).</summary>
    [Test]
    public void HalfPrecisionVariants([Values(ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype, [Values(7, 40, 512)] int rows,
                                      [Values] bool fp32dW)
    {
        if (DeviceName == "cpu" && dtype == ScalarType.Float16) Assume.That(false, "fp16 GEMMs are a GPU format");
        Compare(80, 64, 203, dtype, new CrossEntropyOptions { ChunkRows = rows, AccumulateWeightGradInFloat32 = fp32dW },
            ignoreFraction: 0.1, tol: dtype == ScalarType.BFloat16 ? 2e-2 : 4e-3);
    }

    [Test]
    public void ByteBudgets([Values(1L, 77L * 4 * 3, 1L << 30)] long bytes) =>
        Compare(30, 8, 77, ScalarType.Float32, new CrossEntropyOptions { ChunkBytes = bytes }, ignoreFraction: 0.3, tol: 1e-5);

    /// <summary>dW's buffer is not zero-filled (the first chunk's GEMM writes it with beta = 0): with no kept row no
    /// chunk runs, and dW must still come back as zeros, in both accumulation modes.</summary>
    [Test]
    public void AllRowsIgnoredGiveZeroWeightGradient([Values] bool fp32dW, [Values] LossReduction reduction)
    {
        using var scope = NewDisposeScope();
        var (x, w, b, y) = LossReference.Problem([12], 8, 20, ScalarType.BFloat16, Dev, 9);
        y.fill_(-100);
        var loss = FusedLinearCrossEntropy.Apply(x, w, b, y,
            new CrossEntropyOptions { ChunkRows = 4, AccumulateWeightGradInFloat32 = fp32dW, Reduction = reduction });
        if (reduction == LossReduction.None) loss.backward([ones_like(loss)]); else loss.backward();
        Assert.That(loss.abs().sum().item<float>(), Is.EqualTo(0f));
        Assert.That(x.grad!.to(ScalarType.Float32).abs().max().item<float>(), Is.EqualTo(0f));
        Assert.That(w.grad!.to(ScalarType.Float32).abs().max().item<float>(), Is.EqualTo(0f));
    }

    /// <summary>dX's rows are written by a GEMM with beta = 0 into uninitialized memory: garbage there (NaN included)
    /// must not leak. Poison the allocator's free memory with NaNs of the same size first, then compare.</summary>
    [Test]
    public void UninitializedGradientBuffersDoNotLeak()
    {
        for (var i = 0; i < 3; i++)
        {
            using (var poison = full([64 * 32 + 77 * 32], float.NaN, ScalarType.Float32, Dev)) { }
            Compare(64, 32, 77, ScalarType.Float32, new CrossEntropyOptions { ChunkRows = 16 }, ignoreFraction: 0.25, tol: 1e-5, seed: (ulong)(11 + i));
        }
    }

    /// <summary>The benchmark's "skip the scaling pass when the upstream gradient is 1" experiment: same gradients for
    /// upstream 1 (skipped) and 2.5 (applied).</summary>
    [Test]
    public void SkipUnitUpstreamScaleKeepsTheGradients([Values(1.0, 2.5)] double upstream, [Values(LossReduction.Mean, LossReduction.Sum)] LossReduction reduction)
    {
        var before = FusedCrossEntropyTuning.SkipUnitUpstreamScale;
        try
        {
            FusedCrossEntropyTuning.SkipUnitUpstreamScale = true;
            using var scope = NewDisposeScope();
            var o = new CrossEntropyOptions { ChunkRows = 7, Reduction = reduction };
            var (x, w, b, y) = LossReference.Problem([30], 16, 41, ScalarType.Float32, Dev, 21);
            (LossReference.CrossEntropy(x, w, b, y, o) * upstream).backward();
            var (ex, ew, eb) = (LossReference.Grad(x), LossReference.Grad(w), LossReference.Grad(b));
            LossReference.ZeroGrads(x, w, b);
            (FusedLinearCrossEntropy.Apply(x, w, b, y, o) * upstream).backward();
            TestEnv.AssertClose(x.grad!, ex!, 1e-5, "dX");
            TestEnv.AssertClose(w.grad!, ew!, 1e-5, "dW");
            TestEnv.AssertClose(b.grad!, eb!, 1e-5, "db");
        }
        finally { FusedCrossEntropyTuning.SkipUnitUpstreamScale = before; }
    }

    /// <summary>The hand-off experiment: dW becomes W.grad when it is unset, and a second backward (W.grad set) still
    /// accumulates through the engine; both against the reference, with a non-unit upstream gradient too.</summary>
    [Test]
    public void HandOffWeightGradToLeafKeepsTheGradients([Values(1.0, 2.5)] double upstream, [Values] bool unit,
                                                         [Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        var before = (FusedCrossEntropyTuning.HandWeightGradToLeaf, FusedCrossEntropyTuning.SkipUnitUpstreamScale);
        try
        {
            FusedCrossEntropyTuning.HandWeightGradToLeaf = true;
            FusedCrossEntropyTuning.SkipUnitUpstreamScale = unit;
            using var scope = NewDisposeScope();
            var o = new CrossEntropyOptions { ChunkRows = 9 };
            var (x, w, b, y) = LossReference.Problem([40], 16, 45, dtype, Dev, 31);
            (LossReference.CrossEntropy(x, w, b, y, o) * upstream).backward();
            var (ex, ew, eb) = (LossReference.Grad(x), LossReference.Grad(w), LossReference.Grad(b));
            LossReference.ZeroGrads(x, w, b);
            x.grad = null;
            w.grad = null;
            b.grad = null;
            var tol = dtype == ScalarType.BFloat16 ? 2e-2 : 1e-5;
            (FusedLinearCrossEntropy.Apply(x, w, b, y, o) * upstream).backward();
            Assert.That(w.grad, Is.Not.Null, "W.grad set by the hand-off");
            TestEnv.AssertClose(x.grad!, ex!, tol, "dX");
            TestEnv.AssertClose(w.grad!, ew!, tol, "dW (handed off)");
            TestEnv.AssertClose(b.grad!, eb!, tol, "db");
            // Second step: W.grad exists, so the engine accumulates: 2 × dW.
            (FusedLinearCrossEntropy.Apply(x, w, b, y, o) * upstream).backward();
            TestEnv.AssertClose(w.grad!, ew! * 2, tol, "dW accumulated");
        }
        finally { (FusedCrossEntropyTuning.HandWeightGradToLeaf, FusedCrossEntropyTuning.SkipUnitUpstreamScale) = before; }
    }

    /// <summary>The default hand-off (phase 2): with W.grad unset, backward really makes dW W.grad (phase 1's check
    /// compared Device objects by reference and never did), the values equal the engine's; a second backward with
    /// W.grad set is not handed off and accumulates; WeightGradToLeaf = false and a non-leaf W never hand off.</summary>
    [Test]
    public void DefaultHandOffHappensAndKeepsAutogradResults([Values(LossReduction.Mean, LossReduction.Sum)] LossReduction reduction,
                                                             [Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var o = new CrossEntropyOptions { ChunkRows = 9, Reduction = reduction };
        var (x, w, b, y) = LossReference.Problem([40], 16, 45, dtype, Dev, 41);
        LossReference.CrossEntropy(x, w, b, y, o).backward();
        var (ex, ew, eb) = (LossReference.Grad(x), LossReference.Grad(w), LossReference.Grad(b));
        x.grad = null;
        w.grad = null;
        b.grad = null;
        var tol = dtype == ScalarType.BFloat16 ? 2e-2 : 1e-5;

        var before = FusedCrossEntropyTuning.HandOffs;
        FusedLinearCrossEntropy.Apply(x, w, b, y, o).backward();
        Assert.That(FusedCrossEntropyTuning.HandOffs - before, Is.EqualTo(1), "dW handed to W.grad");
        TestEnv.AssertClose(x.grad!, ex!, tol, "dX");
        TestEnv.AssertClose(w.grad!, ew!, tol, "dW (handed off)");
        TestEnv.AssertClose(b.grad!, eb!, tol, "db");

        before = FusedCrossEntropyTuning.HandOffs;
        FusedLinearCrossEntropy.Apply(x, w, b, y, o).backward();
        Assert.That(FusedCrossEntropyTuning.HandOffs - before, Is.EqualTo(0), "W.grad set: the engine accumulates");
        TestEnv.AssertClose(w.grad!, ew! * 2, tol, "dW accumulated");

        w.grad = null;
        before = FusedCrossEntropyTuning.HandOffs;
        FusedLinearCrossEntropy.Apply(x, w, b, y, o with { WeightGradToLeaf = false }).backward();
        Assert.That(FusedCrossEntropyTuning.HandOffs - before, Is.EqualTo(0), "WeightGradToLeaf = false");
        TestEnv.AssertClose(w.grad!, ew!, tol, "dW through the engine");

        // W not a leaf (a tied or scaled weight): the gradient reaches the leaf through the engine.
        w.grad = null;
        before = FusedCrossEntropyTuning.HandOffs;
        FusedLinearCrossEntropy.Apply(x, w * 1.0, b, y, o).backward();
        Assert.That(FusedCrossEntropyTuning.HandOffs - before, Is.EqualTo(0), "non-leaf W");
        TestEnv.AssertClose(w.grad!, ew!, tol, "dW through a non-leaf W");
    }

    /// <summary>Reduction.None (TokenLogProbs, GRPO) computes dW in backward; the same hand-off applies there, with a
    /// per-row upstream gradient, and the second backward accumulates through the engine.</summary>
    [Test]
    public void HandOffInTheRecomputingBackward([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var o = new CrossEntropyOptions { ChunkRows = 8, Reduction = LossReduction.None };
        var (x, w, b, y) = LossReference.Problem([36], 16, 45, dtype, Dev, 47);
        var upstream = randn([36], generator: new Generator(48)).to(Dev);
        LossReference.CrossEntropy(x, w, b, y, o).backward([upstream]);
        var (ex, ew) = (LossReference.Grad(x), LossReference.Grad(w));
        x.grad = null;
        w.grad = null;
        b.grad = null;
        var tol = dtype == ScalarType.BFloat16 ? 2e-2 : 1e-5;
        var before = FusedCrossEntropyTuning.HandOffs;
        FusedLinearCrossEntropy.Apply(x, w, b, y, o).backward([upstream]);
        Assert.That(FusedCrossEntropyTuning.HandOffs - before, Is.EqualTo(1), "dW handed to W.grad");
        TestEnv.AssertClose(x.grad!, ex!, tol, "dX");
        TestEnv.AssertClose(w.grad!, ew!, tol, "dW (handed off)");
        FusedLinearCrossEntropy.Apply(x, w, b, y, o).backward([upstream]);
        TestEnv.AssertClose(w.grad!, ew! * 2, tol, "dW accumulated");
    }

    /// <summary>Tied weights: W is also used by another op of the graph. The hand-off sets W.grad before the engine
    /// accumulates the other use's gradient into it, so the sum is the same as without the hand-off.</summary>
    [Test]
    public void HandOffWithTiedWeightSumsBothUses()
    {
        using var scope = NewDisposeScope();
        var o = new CrossEntropyOptions { ChunkRows = 7 };
        var (x, w, b, y) = LossReference.Problem([30], 16, 41, ScalarType.Float32, Dev, 43);
        using var ids = randint(0, 41, [30], device: Dev);
        Tensor Loss(bool fused)
        {
            var emb = w.index_select(0, ids);  // an embedding lookup with the same weight
            var h = x + emb * 0.5;
            return (fused ? FusedLinearCrossEntropy.Apply(h, w, b, y, o) : LossReference.CrossEntropy(h, w, b, y, o)) + emb.square().sum() * 0.01;
        }
        Loss(false).backward();
        var ew = LossReference.Grad(w);
        w.grad = null;
        x.grad = null;
        b.grad = null;
        var before = FusedCrossEntropyTuning.HandOffs;
        Loss(true).backward();
        Assert.That(FusedCrossEntropyTuning.HandOffs - before, Is.EqualTo(1), "W is a leaf with no .grad: handed off");
        TestEnv.AssertClose(w.grad!, ew!, 1e-5, "dW of both uses");
    }

    /// <summary>The fused default chunks: the fewest whose logits (input dtype) fit 472 MiB, rows spread evenly in
    /// multiples of 128 (else 64) so that no short tail is left, the more common size first; explicit rows or bytes
    /// give equal chunks and a shorter last one.</summary>
    [Test]
    public void FusedDefaultChunkRows()
    {
        var o = new CrossEntropyOptions();
        Assert.That(o.FusedChunkRows(16384, 128256, 2), Is.EqualTo(new long[] { 1792, 1792, 1792, 1792, 1792, 1792, 1792, 1920, 1920 }),
            "472 MiB / (128256 × 2) = 1929 → at most 1920 rows: 9 chunks in multiples of 128, not 8 × 1920 + 1024");
        Assert.That(o.FusedChunkRows(8192, 256000, 2), Is.EqualTo(new long[] { 896, 896, 896, 896, 896, 896, 896, 960, 960 }),
            "at most 960 rows; multiples of 128 would need a 1024-row chunk, so multiples of 64");
        Assert.That(o.FusedChunkRows(1920, 128256, 2), Is.EqualTo(new long[] { 1920 }), "one full chunk");
        Assert.That(o.FusedChunkRows(100, 128256, 2), Is.EqualTo(new long[] { 100 }), "fewer rows than a chunk: one chunk");
        Assert.That(o.FusedChunkRows(0, 128256, 2), Is.Empty, "no rows, no chunk");
        Assert.That(o.FusedChunkRows(3000, 128256, 2), Is.EqualTo(new long[] { 1536, 1464 }), "the last chunk ends with the rows");
        var tiny = o.FusedChunkRows(100000, 4_000_000, 2);
        Assert.That(tiny, Has.Length.EqualTo(1563).And.All.LessThanOrEqualTo(64), "at least one quantum per chunk");
        Assert.That((o with { ChunkRows = 523 }).FusedChunkRows(2000, 128256, 2), Is.EqualTo(new long[] { 523, 523, 523, 431 }), "explicit rows win");
        Assert.That((o with { ChunkBytes = 128256L * 4 * 1000 }).FusedChunkRows(2000, 128256, 2), Is.EqualTo(new long[] { 896, 896, 208 }), "explicit bytes (float32-equivalent) win");
        Assert.That(o.FusedChunkRows(16384, 128256, 2, budgetBytes: 448L << 20), Has.Length.EqualTo(10), "a smaller budget: more chunks");
        foreach (var (n, v, e) in new[] { (16384L, 128256L, 2L), (8192L, 256000L, 2L), (4096L, 128256L, 2L), (12345L, 151936L, 2L), (16384L, 128256L, 4L), (77777L, 32000L, 2L) })
        {
            var sizes = o.FusedChunkRows(n, v, e);
            Assert.That(sizes.Sum(), Is.EqualTo(n), $"{n}x{v}: the chunks cover the rows");
            Assert.That(sizes.Max() * v * e, Is.LessThanOrEqualTo(ChunkOptions.FusedDefaultChunkBytes), $"{n}x{v}: every chunk fits the budget");
            Assert.That(sizes.Min(), Is.GreaterThanOrEqualTo(sizes.Max() - 2 * ChunkOptions.FusedRowQuantum), $"{n}x{v}: no short tail");
        }
    }

    /// <summary>The CE kernel with 256, 512 and 1024 threads per row (0 = the library's choice: 1024 at this vocabulary)
    /// against the CPU twin on the same bf16 logits: online max/sum-exp, the reverse pass 2, the vector path with and
    /// without a scalar tail (a padded row stride), targets in the first column and in the tail, ignored rows, label
    /// smoothing, softcap, z-loss and a logit scale. On the CPU the count is validated and ignored.</summary>
    [Test, Category("Sanitize")]
    public void KernelThreadCountsAgreeWithTheCpuTwin([Values(0, 256, 512, 1024)] int threads, [Values(40000, 40003)] int vocab,
                                                      [Values(0, 3)] long rowsInFlight)
    {
        var (before, beforeInFlight) = (FusedCrossEntropyTuning.KernelThreadsPerRow, FusedCrossEntropyTuning.KernelRowsInFlight);
        try
        {
            FusedCrossEntropyTuning.KernelThreadsPerRow = threads;
            FusedCrossEntropyTuning.KernelRowsInFlight = rowsInFlight;  // 3 blocks looping over 7 rows (one ignored)
            using var scope = NewDisposeScope();
            const int rows = 7;
            var gen = new Generator(77);
            var wide = (randn([rows, 40008], generator: gen) * 3).to(ScalarType.BFloat16);
            var labels = tensor(new long[] { 0, vocab - 1, 123, -100, vocab / 2, 39999, 7 });
            var o = new CrossEntropyOptions { LabelSmoothing = 0.1, Softcap = 30, ZLoss = 1e-4, LogitScale = 0.7 };
            var scale = tensor(new float[] { 1, 0.5f, 2, 1, 1, 0.25f, 3 });
            (Tensor loss, Tensor lse, Tensor grad) Run(Device d)
            {
                var logits = wide.clone().to(d).narrow(1, 0, vocab);  // a copy (the kernel writes in place); row stride 40008: vectorized with a 3-element tail at 40003
                var (loss, lse) = (empty(rows, ScalarType.Float32, d), empty(rows, ScalarType.Float32, d));
                CrossEntropyChunk.Compute(logits, labels.to(d), o, scale.to(d), 1f, true, loss, lse);
                return (loss.cpu(), lse.cpu(), logits.to(ScalarType.Float32).cpu());
            }
            var (gl, gs, gg) = Run(Dev);
            var (cl, cs, cg) = Run(CPU);
            TestEnv.AssertClose(gl, cl, 1e-5, $"loss, {threads} threads, V = {vocab}");
            TestEnv.AssertClose(gs, cs, 1e-5, $"lse, {threads} threads, V = {vocab}");
            TestEnv.AssertClose(gg, cg, 1e-2, $"gradient, {threads} threads, V = {vocab}");
            // Element-wise: at most about one bf16 rounding apart (the target's p - 1 included).
            var off = ((gg - cg).abs() - (cg.abs() * 1e-2 + 1e-6)).max().item<float>();
            Assert.That(off, Is.LessThanOrEqualTo(0f), $"element-wise gradient difference, {threads} threads, V = {vocab}");
        }
        finally { (FusedCrossEntropyTuning.KernelThreadsPerRow, FusedCrossEntropyTuning.KernelRowsInFlight) = (before, beforeInFlight); }
    }

    [Test]
    public void KernelThreadCountIsValidated()
    {
        var before = FusedCrossEntropyTuning.KernelThreadsPerRow;
        try
        {
            FusedCrossEntropyTuning.KernelThreadsPerRow = 300;
            using var scope = NewDisposeScope();
            var logits = randn([2, 16], device: Dev);
            Assert.Throws<SlothSharp.Interop.SlothInvalidArgumentException>(() => CrossEntropyChunk.Compute(logits,
                tensor(new long[] { 1, 2 }, device: Dev), new CrossEntropyOptions(), null, 1f, true,
                empty(2, device: Dev), empty(2, device: Dev)));
        }
        finally { FusedCrossEntropyTuning.KernelThreadsPerRow = before; }
    }
}
