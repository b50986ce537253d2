using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The NF4 GEMV (decoding's x · Wᵀ with the dequantization inside the dot product) against
/// <c>x · weight.Dequantize(x.dtype)ᵀ</c>: the same weight values, so only the summation order of the float32 sum may
/// differ.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class Nf4GemvTests(string deviceName) : DeviceFixture(deviceName)
{
    private Nf4Weight Weight(long m, long k, ulong seed, int blocksize = Nf4Weight.DefaultBlocksize) =>
        Nf4Weight.Quantize((randn([m, k], generator: new Generator(seed)) * 0.05).to(Dev), blocksize);

    private Tensor Activations(long b, long k, ScalarType dtype, ulong seed) =>
        randn([b, k], generator: new Generator(seed)).to(dtype).to(Dev);

    /// <summary>y within one ulp of dtype (the final rounding) of the float64 product of x and the dequantized weight,
    /// plus the float32 summation error bound k · 2^-24 · Σ|x||w|.</summary>
    private static void AssertMatchesDequantizedMatmul(Tensor y, Tensor x, Nf4Weight weight, string what)
    {
        using var scope = NewDisposeScope();
        var w = weight.Dequantize(x.dtype).cpu().to(ScalarType.Float64);
        var xd = x.cpu().to(ScalarType.Float64);
        var exact = xd.matmul(w.t());
        var absDot = xd.abs().matmul(w.abs().t());
        var k = x.shape[1];
        var bound = exact.abs() * FusedOpsReference.UnitRoundoff(x.dtype) + absDot * (k * Math.Pow(2, -24)) + 1e-30;
        var err = (y.cpu().to(ScalarType.Float64) - exact).abs();
        var worst = (err - bound).max().item<double>();
        Assert.That(worst, Is.LessThanOrEqualTo(0), $"{what}: an element is off by more than its bound (relative error {TestEnv.RelativeError(y, exact):E3})");
        // And against the plain TorchSharp expression the decoder would otherwise run (its own summation order).
        var plain = nn.functional.linear(x, weight.Dequantize(x.dtype));
        var tol = x.dtype == ScalarType.Float32 ? 1e-5 : x.dtype == ScalarType.Float16 ? 2e-3 : 1e-2;
        TestEnv.AssertClose(y, plain, tol, $"{what} vs linear(x, Dequantize)");
    }

    [Test, Category("Sanitize")]
    public void MatchesDequantizeThenMatmul([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
                                            [Values(1, 3, 8)] int rows)
    {
        using var scope = NewDisposeScope();
        using var w = Weight(37, 256, 1);  // k % 32 == 0: the GPU's vector path; 37 rows: a partial last block of rows
        var x = Activations(rows, 256, dtype, 2);
        var y = Nf4Gemv.Apply(x, w);
        Assert.That(y.dtype, Is.EqualTo(dtype));
        Assert.That(y.shape, Is.EqualTo(new long[] { rows, 37 }));
        Assert.That(y.device_type, Is.EqualTo(x.device_type));
        AssertMatchesDequantizedMatmul(y, x, w, $"{dtype} b={rows}");
    }

    [Test, Category("Sanitize")]
    public void OddShapesAndBlocksizes([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype,
                                       [Values(100, 33, 1)] int k, [Values(32, 128)] int blocksize)
    {
        using var scope = NewDisposeScope();
        // k not a multiple of 32: the element-wise path; rows straddle absmax blocks.
        using var w = Weight(9, k, 3, blocksize);
        var x = Activations(2, k, dtype, 4);
        AssertMatchesDequantizedMatmul(Nf4Gemv.Apply(x, w), x, w, $"k={k} blocksize={blocksize}");
    }

    [Test]
    public void ViewsOfActivationsWork()
    {
        using var scope = NewDisposeScope();
        using var w = Weight(16, 64, 5);
        var big = Activations(3, 65, ScalarType.BFloat16, 6);
        var x = big[TensorIndex.Colon, TensorIndex.Slice(1, 65)];  // not contiguous
        AssertMatchesDequantizedMatmul(Nf4Gemv.Apply(x, w), x.contiguous(), w, "strided x");
        var flat = Activations(1, 65, ScalarType.BFloat16, 7).flatten();
        var shifted = flat[TensorIndex.Slice(1, 65)].view(1, 64);  // contiguous, 2 bytes past an aligned address
        AssertMatchesDequantizedMatmul(Nf4Gemv.Apply(shifted, w), shifted.contiguous(), w, "offset x");
    }

    [Test]
    public void BadArgumentsAreArgumentExceptions()
    {
        using var scope = NewDisposeScope();
        using var w = Weight(8, 64, 8);
        Assert.Throws<ArgumentException>(() => Nf4Gemv.Apply(Activations(9, 64, ScalarType.Float32, 1), w), "too many rows");
        Assert.Throws<ArgumentException>(() => Nf4Gemv.Apply(Activations(1, 63, ScalarType.Float32, 1), w), "wrong k");
        Assert.Throws<ArgumentException>(() => Nf4Gemv.Apply(Activations(1, 64, ScalarType.Float32, 1).view(1, 1, 64), w), "3-D x");
        Assert.Throws<ArgumentException>(() => Nf4Gemv.Apply(zeros([1, 64], ScalarType.Int32, Dev), w), "integer x");
        Assert.Throws<ArgumentException>(() => Nf4Gemv.Apply(Activations(1, 64, ScalarType.Float32, 1).requires_grad_(), w), "needs a gradient");
        using (no_grad())
            Assert.DoesNotThrow(() => Nf4Gemv.Apply(Activations(1, 64, ScalarType.Float32, 1).requires_grad_(), w).Dispose());
        using var w3 = Nf4Weight.Quantize(randn([2, 4, 64]).to(Dev));
        Assert.Throws<ArgumentException>(() => Nf4Gemv.Apply(Activations(1, 64, ScalarType.Float32, 1), w3), "3-D weight");
        if (DeviceName == "cuda")
            Assert.Throws<ArgumentException>(() => Nf4Gemv.Apply(Activations(1, 64, ScalarType.Float32, 1).cpu(), w), "device mismatch");
        w.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Nf4Gemv.Apply(Activations(1, 64, ScalarType.Float32, 1), w));
    }

    [Test, Category("Sanitize")]
    public void CudaMatchesCpu([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
                               [Values(1, 5, 8)] int rows, [Values(2048, 100)] int k)
    {
        if (DeviceName != "cuda") Assert.Ignore("the CUDA fixture compares CUDA with the CPU");
        using var scope = NewDisposeScope();
        using var wCpu = Nf4Weight.Quantize(randn([203, k], generator: new Generator(9)) * 0.05);
        using var wGpu = wCpu.To(CUDA);
        var x = randn([rows, k], generator: new Generator(10)).to(dtype);
        var cpu = Nf4Gemv.Apply(x, wCpu);
        var gpu = Nf4Gemv.Apply(x.to(CUDA), wGpu).cpu();
        // Both sum exact products in float32 (the CPU in double): they may differ by the summation order only.
        Assert.That(FusedOpsReference.WithinUlpsOrAbs(gpu, cpu, 1, 1e-5), Is.True, $"relative error {TestEnv.RelativeError(gpu, cpu):E3}");
        // A second call gives the same bits (a fixed reduction order).
        Assert.That(TestEnv.BitEqual(Nf4Gemv.Apply(x.to(CUDA), wGpu).cpu(), gpu), Is.True, "deterministic");
    }

    [Test, Category("Large")]
    public void DecoderSizedProjectionMatches()
    {
        using var scope = NewDisposeScope();
        // Llama-3.2-1B's MLP down projection shape at batch 1 (8192 wide in, 2048 out).
        using var w = Weight(2048, 8192, 11);
        var x = Activations(1, 8192, ScalarType.BFloat16, 12);
        AssertMatchesDequantizedMatmul(Nf4Gemv.Apply(x, w), x, w, "2048 x 8192");
    }

    /// <summary>Each row's result does not depend on the rows beside it: one row at a time and eight at once (another
    /// kernel instantiation on CUDA) give the same bits. The decoder relies on it: a sequence's tokens must not change
    /// with the batch it is generated in.</summary>
    [Test]
    public void EachRowHasTheSameBitsAtAnyBatch([Values(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16)] ScalarType dtype,
                                                [Values(4096, 8192)] int k)
    {
        // On CUDA in bf16/f16 both run on tensor cores: 4096 with 8 warps a tile, 8192 with 16 (nf4_gemv_tiles.cuh).
        using var scope = NewDisposeScope();
        using var w = Weight(300, k, 21);
        var x = Activations(8, k, dtype, 22);
        var all = Nf4Gemv.Apply(x, w);
        for (long r = 0; r < 8; ++r)
            Assert.That(TestEnv.BitEqual(Nf4Gemv.Apply(x.narrow(0, r, 1), w), all.narrow(0, r, 1)), Is.True, $"row {r}");
        AssertMatchesDequantizedMatmul(all, x, w, $"{dtype} 8 x {k}");
    }
}
