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
}
