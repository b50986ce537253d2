using NUnit.Framework;
using SlothSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>The decoding engine's exported kernels (sloth_decode_attention, sloth_dense_gemv) on the CPU in float32
/// against plain TorchSharp computations of the same formulas.</summary>
public class DecodeKernelTests
{
    private static nint Ptr(Tensor t) => TensorInterop.DataPtr(t);

    /// <summary>softmax(mask(softcap(q kᵀ · scale))) v per row and head, TorchSharp's way (GQA by repeating K/V).</summary>
    private static Tensor ReferenceAttention(Tensor q, Tensor k, Tensor v, Tensor valid, long len, long window, float scale, float softcap)
    {
        var (b, h, hd) = (q.shape[0], q.shape[1], q.shape[2]);
        var group = h / k.shape[1];
        var keys = k.narrow(2, 0, len + 1).repeat_interleave(group, 1);   // [B, H, L+1, D]
        var values = v.narrow(2, 0, len + 1).repeat_interleave(group, 1);
        var s = q.unsqueeze(2).matmul(keys.transpose(2, 3)).squeeze(2) * scale;  // [B, H, L+1]
        if (softcap > 0) s = (s / softcap).tanh() * softcap;
        var j = arange(0, len + 1, 1, ScalarType.Int64);
        var visible = valid.narrow(1, 0, len + 1);
        if (window > 0) visible = visible & j.gt(len - window).unsqueeze(0);
        s = s.masked_fill(visible.logical_not().unsqueeze(1), double.NegativeInfinity);
        return s.softmax(-1).unsqueeze(2).matmul(values).squeeze(2).reshape(b, h * hd);
    }

    /// <summary>sloth_decode_attention in <paramref name="dtype"/> (inputs rounded to it; float32 by default) on
    /// <paramref name="device"/>: q [B, H, D] over caches [B', KVH, L, D]
    /// (B' ≥ B rows, the first B used) with valid [B', L] and the current index <paramref name="len"/>; a fresh scratch
    /// unless <paramref name="scratch"/> (of <see cref="AttentionScratchFloats"/> floats on the device) is given. The
    /// output starts as <paramref name="outputFill"/> (NaN: an element never written shows). Returns it [B, H·D] on the
    /// CPU. <paramref name="misalignCaches"/>: k and v start 2 bytes past a 16-byte boundary (the kernels' element-wise
    /// fallback for the 16-byte loads).</summary>
    internal static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor valid, long len, long window, float scale, float softcap,
                                     Device device, Tensor? scratch = null, float outputFill = 0f, ScalarType dtype = ScalarType.Float32,
                                     bool misalignCaches = false)
    {
        var (batch, heads, headDim) = (q.shape[0], q.shape[1], q.shape[2]);
        var (cacheBatch, kvHeads, maxLength) = (k.shape[0], k.shape[1], k.shape[2]);
        var length = tensor(new long[] { len }).to(device);
        var partial = scratch ?? zeros(AttentionScratchFloats(batch, heads, headDim, maxLength), device: device);
        var output = full(new long[] { batch, heads * headDim }, outputFill, dtype, device);
        var (qd, kd, vd, md) = (q.to(dtype).to(device), k.to(dtype).to(device), v.to(dtype).to(device), valid.to(device));
        if (misalignCaches) (kd, vd) = (OneElementIn(kd), OneElementIn(vd));
        var onCpu = device.type == DeviceType.CPU;
        Native.DecodeAttention(Ptr(qd), Ptr(kd), Ptr(vd), Ptr(md), Ptr(length), TensorInterop.ToSloth(dtype, "dtype"), batch, cacheBatch, heads, kvHeads,
            headDim, maxLength, window, scale, softcap, Ptr(partial), Ptr(output), onCpu ? -1 : 0, 0);
        if (!onCpu) CudaDevice.Synchronize();
        return output.to(ScalarType.Float32).cpu();
    }

    /// <summary>A copy of <paramref name="t"/> that starts one element into a fresh buffer (2 bytes past its aligned start
    /// for the 16-bit dtypes).</summary>
    private static Tensor OneElementIn(Tensor t)
    {
        var buffer = zeros(new long[] { t.numel() + 1 }, t.dtype, t.device);
        var view = buffer.narrow(0, 1, t.numel()).view(t.shape);
        view.copy_(t);
        return view;
    }

    /// <summary>The float32 values of sloth_decode_attention's scratch (partials, then batch × heads counters).</summary>
    internal static long AttentionScratchFloats(long batch, long heads, long headDim, long maxLength)
    {
        long floats = 0;
        unsafe { Native.DecodeAttentionPartialFloats(batch, heads, headDim, maxLength, (nint)(&floats)); }
        return floats;
    }

    /// <summary>Random float32 q [B, H, D], caches k/v [B + 1, KVH, maxLength, D] (a cache batch larger than the
    /// step's) and a valid mask [B + 1, maxLength] with ~70% of the keys visible and the current one (len) always.</summary>
    internal static (Tensor Q, Tensor K, Tensor V, Tensor Valid) AttentionInputs(int batch, int heads, int kvHeads, int headDim, int len, int maxLength)
    {
        var q = randn(batch, heads, headDim);
        var k = randn(batch + 1, kvHeads, maxLength, headDim);
        var v = randn(batch + 1, kvHeads, maxLength, headDim);
        var valid = rand(batch + 1, maxLength).gt(0.3);
        valid.select(1, len).fill_(true);
        return (q, k, v, valid);
    }

    [TestCase(2, 8, 2, 16, 40, 0, 0f)]
    [TestCase(3, 4, 1, 32, 100, 7, 0f)]
    [TestCase(1, 6, 3, 8, 70, 0, 5f)]
    [TestCase(2, 4, 4, 16, 1, 0, 0f)]
    public void AttentionMatchesTorch(int batch, int heads, int kvHeads, int headDim, int len, int window, float softcap)
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var (q, k, v, valid) = AttentionInputs(batch, heads, kvHeads, headDim, len, len + 5);
        var scale = 1 / MathF.Sqrt(headDim);
        var output = Attention(q, k, v, valid, len, window, scale, softcap, CPU);
        var expected = ReferenceAttention(q, k.narrow(0, 0, batch), v.narrow(0, 0, batch), valid.narrow(0, 0, batch), len, window, scale, softcap);
        Assert.That((output - expected).abs().max().item<float>(), Is.LessThan(2e-5f));
    }

    /// <summary>The CPU kernel in bfloat16 (the dtype of the GPU walk's sub-warp path, checked against this one on the
    /// GPU): the torch reference on the same bf16-rounded inputs, within the output's bf16 rounding.</summary>
    [TestCase(1, 8, 2, 64, 50, 0, 0f)]
    [TestCase(2, 6, 2, 128, 33, 9, 20f)]
    public void AttentionInBf16MatchesTorch(int batch, int heads, int kvHeads, int headDim, int len, int window, float softcap)
    {
        using var scope = NewDisposeScope();
        manual_seed(9);
        var maxLength = len + 5;
        Tensor Bf16(Tensor x) => x.to(ScalarType.BFloat16).to(ScalarType.Float32);
        var q = Bf16(randn(batch, heads, headDim));
        var k = Bf16(randn(batch, kvHeads, maxLength, headDim));
        var v = Bf16(randn(batch, kvHeads, maxLength, headDim));
        var valid = rand(batch, maxLength).gt(0.3);
        valid.select(1, len).fill_(true);
        var scale = 1 / MathF.Sqrt(headDim);
        var output = Attention(q, k, v, valid, len, window, scale, softcap, CPU, dtype: ScalarType.BFloat16);
        var expected = ReferenceAttention(q, k, v, valid, len, window, scale, softcap);
        Assert.That((output - expected).abs().max().item<float>(), Is.LessThan(1.6e-2f));
    }

    /// <summary>The attention on <paramref name="device"/> over random inputs (<see cref="AttentionInputs"/>, seeded by
    /// the caller) twice in bf16: with K and V zeroed, and with NaN, at every position a key is hidden at (invalid,
    /// outside the window, past the current length). A kernel that never lets a masked key's K or V reach the sum gives
    /// the same bits both times.</summary>
    internal static (Tensor Zeroed, Tensor Poisoned) AttentionOverMaskedValues(int batch, int heads, int kvHeads, int headDim,
                                                                               int len, int maxLength, int window, Device device)
    {
        var (q, k, v, valid) = AttentionInputs(batch, heads, kvHeads, headDim, len, maxLength);
        var positions = arange(maxLength);
        var seen = valid.clone().logical_and(positions.le(len).unsqueeze(0));
        if (window > 0) seen = seen.logical_and(positions.gt(len - window).unsqueeze(0));
        var hidden = seen.logical_not().unsqueeze(1).unsqueeze(-1);  // [B + 1, 1, L, 1]
        var scale = 1 / MathF.Sqrt(headDim);
        var zeroed = Attention(q, k.masked_fill(hidden, 0f), v.masked_fill(hidden, 0f), valid, len, window, scale, 0f, device,
            dtype: ScalarType.BFloat16);
        var poisoned = Attention(q, k.masked_fill(hidden, float.NaN), v.masked_fill(hidden, float.NaN), valid, len, window,
            scale, 0f, device, dtype: ScalarType.BFloat16);
        return (zeroed, poisoned);
    }

    /// <summary>The CPU kernel never uses a masked key's K or V: NaN at every invalid position, outside the window
    /// and past the current length gives the bits of zeros there (the GPU walks are held to the same in
    /// DecodeAttentionGpuTests).</summary>
    [TestCase(2, 8, 2, 64, 50, 0)]
    [TestCase(3, 6, 3, 128, 33, 9)]
    public void AttentionNeverReadsMaskedValues(int batch, int heads, int kvHeads, int headDim, int len, int window)
    {
        using var scope = NewDisposeScope();
        manual_seed(31);
        var (zeroed, poisoned) = AttentionOverMaskedValues(batch, heads, kvHeads, headDim, len, len + 7, window, CPU);
        Assert.That(poisoned.isfinite().all().item<bool>(), Is.True);
        Assert.That(TestEnv.BitEqual(poisoned, zeroed), Is.True);
    }

    /// <summary>The attention's scratch for a batch must hold the partials of every smaller batch too (an engine runs
    /// fewer rows on the scratch of its most): the split over the keys changes with the batch (finer up to 4 rows,
    /// coarser from 32), so the size query takes the most over the batch ranges, not the given batch's splits.</summary>
    [TestCase(8, 128, 547)]
    [TestCase(16, 64, 4096)]
    [TestCase(32, 128, 600)]
    [TestCase(16, 256, 100_000)]
    public void AttentionScratchCoversEverySmallerBatch(int heads, int headDim, int maxLength)
    {
        long previous = 0;
        for (long batch = 1; batch <= 80; ++batch)
        {
            var floats = AttentionScratchFloats(batch, heads, headDim, maxLength);
            Assert.That(floats, Is.GreaterThanOrEqualTo(previous), $"batch {batch}");
            previous = floats;
        }
        // Batch 31 splits a 4096-key cache in 32 chunks of 128; batch 32 in 8 of 512: the scratch of 32 still holds 31's.
        Assert.That(AttentionScratchFloats(32, heads, headDim, maxLength),
            Is.GreaterThanOrEqualTo(AttentionScratchFloats(31, heads, headDim, maxLength)));
    }

    [Test]
    public void AttentionRejectsALengthOutsideTheCache()
    {
        using var scope = NewDisposeScope();
        var q = zeros(1, 2, 8);
        var k = zeros(1, 2, 4, 8);
        var valid = ones(1, 4).to(ScalarType.Bool);
        var length = tensor(new long[] { 4 });
        var partial = zeros(4096);
        var output = zeros(1, 16);
        var e = Assert.Throws<SlothInvalidArgumentException>(() => Native.DecodeAttention(Ptr(q), Ptr(k), Ptr(k), Ptr(valid), Ptr(length),
            SlothDtype.F32, 1, 1, 2, 2, 8, 4, 0, 1f, 0f, Ptr(partial), Ptr(output), -1, 0));
        Assert.That(e!.Message, Does.Contain("length"));
    }

    [TestCase(1, 64, 30, 1f, false, false, 0f)]
    [TestCase(3, 33, 17, 0.5f, true, false, 0f)]
    [TestCase(11, 16, 50, 1f, false, true, 3f)]
    public void DenseGemvMatchesTorch(int batch, int k, int m, float scale, bool accumulate, bool outF32, float softcap)
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var x = randn(batch, k);
        var w = randn(m, k);
        var y0 = randn(batch, m);
        var y = y0.clone();
        Native.DenseGemv(Ptr(x), Ptr(w), SlothDtype.F32, batch, k, m, scale, accumulate ? 1 : 0, outF32 ? 1 : 0, softcap, Ptr(y), -1, 0);
        var expected = x.matmul(w.t()) * scale;
        if (accumulate) expected = expected + y0;
        if (softcap > 0) expected = (expected / softcap).tanh() * softcap;
        Assert.That((y - expected).abs().max().item<float>(), Is.LessThan(1e-4f));
    }

    [Test]
    public void DenseGemvInBf16RoundsLikeTorch()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var x = randn(2, 48).to(ScalarType.BFloat16);
        var w = randn(20, 48).to(ScalarType.BFloat16);
        var y = zeros(2, 20, ScalarType.Float32);
        Native.DenseGemv(Ptr(x), Ptr(w), SlothDtype.Bf16, 2, 48, 20, 1f, 0, 1, 0f, Ptr(y), -1, 0);
        // float32 sum, rounded once to bf16: torch's float32 matmul of the same values, rounded to bf16.
        var expected = x.to(ScalarType.Float32).matmul(w.to(ScalarType.Float32).t()).to(ScalarType.BFloat16).to(ScalarType.Float32);
        Assert.That((y - expected).abs().max().item<float>(), Is.LessThanOrEqualTo((expected.abs().max() * (1.0 / 128)).item<float>()));
        Assert.That(y.to(ScalarType.BFloat16).to(ScalarType.Float32).equal(y).all().item<bool>(), Is.True, "values are bf16 numbers");
    }
}
