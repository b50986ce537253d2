using SlothSharp.References;
using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The native CPU kernel against a TorchSharp-only reference on random inputs: exact equality.</summary>
public class Nf4ReferenceTests
{
    private static readonly object[] Shapes =
    [
        new object[] { new long[] { 1 }, 64 },
        new object[] { new long[] { 7 }, 64 },
        new object[] { new long[] { 64 }, 64 },
        new object[] { new long[] { 3, 37 }, 64 },        // 111: odd, not a multiple of 64
        new object[] { new long[] { 128, 100 }, 64 },
        new object[] { new long[] { 17, 4160 }, 64 },
        new object[] { new long[] { 65, 257 }, 32 },
        new object[] { new long[] { 33, 1000 }, 128 },
        new object[] { new long[] { 5, 5000 }, 4096 },
        new object[] { new long[] { 300, 300 }, 256 },
        new object[] { new long[] { 2, 3, 333 }, 64 },
    ];

    [TestCaseSource(nameof(Shapes))]
    public void CpuKernelEqualsTorchReference(long[] shape, int blocksize)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)(1234 + shape.Sum() + blocksize));
        foreach (var nested in new[] { 256, 32 })
        {
            using var w = Nf4Reference.Random(shape, blocksize, nested, gen);
            foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32 })
            {
                var actual = w.Dequantize(dtype);
                var expected = Nf4DequantizeReference.Dequantize(w, dtype);
                Assert.That(TestEnv.BitEqual(actual, expected), Is.True, $"{dtype}, nested {nested}: kernel differs from the reference");
            }
        }
    }

    [Test]
    public void QuantizeHandlesPartialBlocksAndOddLengths()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(7);
        foreach (var n in new long[] { 1, 3, 63, 65, 1001 })
        {
            var x = randn([n], ScalarType.Float32, generator: gen);
            using var w = Nf4Weight.Quantize(x);
            var back = w.Dequantize(ScalarType.Float32);
            Assert.That(back.shape, Is.EqualTo(new[] { n }));
            TestEnv.AssertClose(back, x, n < 8 ? 0.35 : 0.15, $"n = {n}");
            // An odd length pads its last byte's low nibble the way bitsandbytes does: quantized zero (code 7).
            if (n % 2 == 1)
                Assert.That(w.Packed[(n - 1) / 2].item<byte>() & 0xF, Is.EqualTo(7), "padding nibble");
        }
    }
}
