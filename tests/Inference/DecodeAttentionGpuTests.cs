using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests.Inference;

/// <summary>sloth_decode_attention on CUDA in float32 against the CPU kernel (itself checked against TorchSharp in
/// DecodeKernelTests): masked keys, windows, soft-caps, GQA, and lengths long enough that every warp walks many keys
/// (the loop that fetches the next key while it computes the current one), at small and large batch (two split
/// policies).</summary>
[Category("Gpu")]
public class DecodeAttentionGpuTests
{
    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    [TestCase(1, 32, 8, 64, 600, 0, 0f)]
    [TestCase(2, 8, 2, 16, 40, 0, 0f)]
    [TestCase(3, 4, 1, 32, 100, 7, 0f)]
    [TestCase(1, 6, 3, 8, 70, 0, 5f)]
    [TestCase(64, 32, 8, 64, 700, 0, 0f)]
    [TestCase(16, 16, 8, 128, 900, 256, 30f)]
    [TestCase(9, 8, 8, 256, 333, 0, 0f)]
    public void CudaMatchesTheCpuKernel(int batch, int heads, int kvHeads, int headDim, int len, int window, float softcap)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var (q, k, v, valid) = DecodeKernelTests.AttentionInputs(batch, heads, kvHeads, headDim, len, len + 37);
        var scale = 1 / MathF.Sqrt(headDim);
        var expected = DecodeKernelTests.Attention(q, k, v, valid, len, window, scale, softcap, CPU);
        var actual = DecodeKernelTests.Attention(q, k, v, valid, len, window, scale, softcap, CUDA);
        Assert.That((actual - expected).abs().max().item<float>(), Is.LessThan(2e-5f));
    }

    /// <summary>bfloat16, where head_dim 64 and 128 walk several keys per warp: on tensor cores (16 a step) where the
    /// kernels are compiled for sm_80+, else (the compute_75 build's run of these tests) 4 or 2 keys a warp, 8 or 16
    /// lanes each, merged in-warp. Against the CPU kernel on the same bf16 inputs, for every group size the dispatch
    /// rounds up (1, 2, 3, 4, 6, 8 query heads per KV head), masks, windows and soft-caps, at the three split policies.
    /// The walks sum in different orders, so the outputs agree to a few bf16 roundings, not bit for bit.</summary>
    [TestCase(1, 8, 8, 64, 600, 0, 0f)]
    [TestCase(1, 16, 8, 128, 700, 0, 0f)]
    [TestCase(2, 6, 2, 64, 333, 50, 0f)]
    [TestCase(3, 24, 4, 128, 257, 0, 20f)]
    [TestCase(64, 32, 8, 64, 500, 0, 0f)]
    [TestCase(9, 32, 4, 64, 129, 0, 0f)]
    [TestCase(5, 8, 1, 128, 90, 17, 0f)]
    [TestCase(40, 16, 8, 128, 1100, 0, 0f)]
    [TestCase(33, 8, 4, 64, 600, 100, 30f)]
    public void KeysPerWarpWalksMatchTheCpuKernelInBf16(int batch, int heads, int kvHeads, int headDim, int len, int window, float softcap)
    {
        using var scope = NewDisposeScope();
        manual_seed(13);
        var (q, k, v, valid) = DecodeKernelTests.AttentionInputs(batch, heads, kvHeads, headDim, len, len + 21);
        var scale = 1 / MathF.Sqrt(headDim);
        var expected = DecodeKernelTests.Attention(q, k, v, valid, len, window, scale, softcap, CPU, dtype: ScalarType.BFloat16);
        var actual = DecodeKernelTests.Attention(q, k, v, valid, len, window, scale, softcap, CUDA, dtype: ScalarType.BFloat16);
        Assert.That(actual.isfinite().all().item<bool>(), Is.True);
        Assert.That((actual - expected).abs().max().item<float>(), Is.LessThan(2e-2f));
    }

    /// <summary>Where the kernels are compiled for sm_80+, bf16/f16 heads of 64 or 128 values with at most 8 query heads
    /// per KV head walk the keys on tensor cores (16 keys a warp step, the scores and the values' sum as mma products,
    /// the probabilities rounded to the dtype): against the CPU kernel on the same inputs, at every group size the walk
    /// covers (1, 2, 3, 4, 6, 8), lengths that end inside a 16-key tile and inside a 64-key chunk, a single key, masks,
    /// windows and soft-caps, at the three split policies.</summary>
    [TestCase(1, 32, 8, 64, 600, 0, 0f, ScalarType.BFloat16)]
    [TestCase(1, 16, 8, 128, 63, 0, 0f, ScalarType.Float16)]
    [TestCase(3, 24, 4, 128, 130, 40, 30f, ScalarType.BFloat16)]
    [TestCase(4, 12, 2, 64, 0, 0, 0f, ScalarType.BFloat16)]
    [TestCase(5, 8, 8, 64, 37, 0, 0f, ScalarType.BFloat16)]
    [TestCase(6, 16, 8, 128, 300, 0, 0f, ScalarType.Float16)]
    [TestCase(8, 12, 4, 64, 129, 30, 0f, ScalarType.BFloat16)]
    [TestCase(12, 32, 8, 64, 513, 0, 0f, ScalarType.BFloat16)]
    [TestCase(33, 24, 4, 128, 257, 0, 20f, ScalarType.Float16)]
    [TestCase(64, 64, 8, 128, 1000, 100, 0f, ScalarType.BFloat16)]
    [TestCase(7, 16, 8, 128, 0, 0, 0f, ScalarType.BFloat16)]
    [TestCase(40, 16, 8, 128, 1100, 0, 0f, ScalarType.BFloat16)]
    public void TensorCoreWalkMatchesTheCpuKernel(int batch, int heads, int kvHeads, int headDim, int len, int window, float softcap,
                                                  ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        manual_seed(23);
        var (q, k, v, valid) = DecodeKernelTests.AttentionInputs(batch, heads, kvHeads, headDim, len, len + 19);
        var scale = 1 / MathF.Sqrt(headDim);
        var expected = DecodeKernelTests.Attention(q, k, v, valid, len, window, scale, softcap, CPU, dtype: dtype);
        var actual = DecodeKernelTests.Attention(q, k, v, valid, len, window, scale, softcap, CUDA, dtype: dtype);
        Assert.That(actual.isfinite().all().item<bool>(), Is.True);
        var tolerance = dtype == ScalarType.Float16 ? 1e-2f : 2e-2f;
        Assert.That((actual - expected).abs().max().item<float>(), Is.LessThan(tolerance));
    }

    /// <summary>The walks give masked keys a weight of exactly zero and never let their values reach the sum (the
    /// tensor-core walk, and in the compute_75 build the sub-warp walk): NaN in K and V at every invalid position,
    /// outside the window and past the current length gives the bits of zeros there (a padded cache row may hold
    /// anything).</summary>
    [TestCase(1, 32, 8, 64, 200, 0)]
    [TestCase(2, 16, 8, 128, 97, 30)]
    [TestCase(9, 32, 8, 64, 200, 0)]
    [TestCase(64, 16, 8, 128, 333, 50)]
    public void TensorCoreWalkNeverReadsMaskedValues(int batch, int heads, int kvHeads, int headDim, int len, int window)
    {
        using var scope = NewDisposeScope();
        manual_seed(29);
        var (zeroed, poisoned) = DecodeKernelTests.AttentionOverMaskedValues(batch, heads, kvHeads, headDim, len, len + 40, window, CUDA);
        Assert.That(poisoned.isfinite().all().item<bool>(), Is.True);
        Assert.That(TestEnv.BitEqual(poisoned, zeroed), Is.True);
    }

    /// <summary>The walks read K and V with 16-byte (the tensor-core walk's V at head_dim 64: 8-byte) loads where the
    /// caches are 16-byte aligned, and element by element where they are not: the same values in the same order, so
    /// the same bits (bf16 and f16; head_dim 64 and 128; a batch of each split policy; masks, a window, a
    /// soft-cap).</summary>
    [TestCase(1, 16, 8, 128, 700, 0, 0f, ScalarType.BFloat16)]
    [TestCase(64, 32, 8, 64, 300, 0, 0f, ScalarType.BFloat16)]
    [TestCase(3, 24, 4, 128, 257, 40, 20f, ScalarType.Float16)]
    [TestCase(9, 8, 8, 64, 129, 0, 0f, ScalarType.Float16)]
    public void VectorLoadsGiveTheBitsOfElementLoads(int batch, int heads, int kvHeads, int headDim, int len, int window, float softcap, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        manual_seed(17);
        var (q, k, v, valid) = DecodeKernelTests.AttentionInputs(batch, heads, kvHeads, headDim, len, len + 29);
        var scale = 1 / MathF.Sqrt(headDim);
        var vector = DecodeKernelTests.Attention(q, k, v, valid, len, window, scale, softcap, CUDA, dtype: dtype);
        var elements = DecodeKernelTests.Attention(q, k, v, valid, len, window, scale, softcap, CUDA, dtype: dtype, misalignCaches: true);
        Assert.That(vector.isfinite().all().item<bool>(), Is.True);
        Assert.That(TestEnv.BitEqual(vector, elements), Is.True);
    }

    /// <summary>The partials are merged by the last block of each (row, kv head) to arrive, counted in int32 counters at
    /// the scratch's end that every call must leave at zero: one scratch reused over lengths that use 1, some and all of
    /// the splits (blocks past the length never count) gives the same bits as a fresh scratch each time, and its
    /// counters are zero after every call. A counter left non-zero would make a later call skip (or mistime) its merge.
    /// </summary>
    [TestCase(1, 32, 8, 64, 4096)]
    [TestCase(3, 8, 2, 128, 700)]
    [TestCase(64, 16, 16, 64, 300)]
    [TestCase(2, 16, 1, 32, 200)]
    public void ReusedScratchGivesTheBitsOfAFreshOne(int batch, int heads, int kvHeads, int headDim, int maxLength)
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var q = randn(batch, heads, headDim).cuda();
        var k = randn(batch, kvHeads, maxLength, headDim).cuda();
        var v = randn(batch, kvHeads, maxLength, headDim).cuda();
        var valid = rand(batch, maxLength).gt(0.2).cuda();
        var floats = DecodeKernelTests.AttentionScratchFloats(batch, heads, headDim, maxLength);
        var counters = (long)batch * heads;
        var reused = zeros(floats, device: CUDA);
        Tensor Run(Tensor scratch, int len) =>
            DecodeKernelTests.Attention(q, k, v, valid, len, 0, 1 / MathF.Sqrt(headDim), 0f, CUDA, scratch, outputFill: float.NaN);
        foreach (var len in new[] { 0, 5, maxLength / 3, maxLength - 1, 17, maxLength / 3, 0 })
        {
            var fresh = Run(zeros(floats, device: CUDA), len);
            var again = Run(reused, len);
            Assert.That(fresh.isnan().any().item<bool>(), Is.False, $"length {len}: an output was never written");
            Assert.That(again.ne(fresh).sum().item<long>(), Is.EqualTo(0L), $"length {len}: reused scratch changed the bits");
            var tail = reused.narrow(0, floats - counters, counters).cpu().data<float>().ToArray();
            Assert.That(tail.Count(f => BitConverter.SingleToInt32Bits(f) != 0), Is.EqualTo(0), $"length {len}: counters not left at zero");
        }
    }
}
