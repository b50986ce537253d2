using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The nested offset follows the summation order slothsharp.h documents (1024 double lane sums, then the
/// lanes in order): the order the GPU kernel reproduces, so both devices give the same bits.</summary>
public class Nf4QuantizeOrderTests
{
    [TestCase(64L * 5000 + 17, 64)]
    [TestCase(333L, 32)]
    public void OffsetIsTheDocumentedMean(long n, int blocksize)
    {
        using var scope = NewDisposeScope();
        var source = randn([n], generator: new Generator(9)) * (rand([n], generator: new Generator(10)) + 0.5);
        using var w = Nf4Weight.Quantize(source, blocksize);
        var blocks = (n + blocksize - 1) / blocksize;
        var padded = cat([source.abs(), zeros(blocks * blocksize - n)]);
        var absmax = padded.view(blocks, blocksize).amax([1]).data<float>().ToArray();
        const int lanes = 1024;
        var laneSums = new double[lanes];
        for (var t = 0; t < lanes; t++)
            for (var b = t; b < blocks; b += lanes) laneSums[t] += absmax[b];
        var sum = 0.0;
        foreach (var s in laneSums) sum += s;
        var expected = (float)(sum / blocks);
        Assert.That(BitConverter.SingleToInt32Bits(w.NestedOffset.item<float>()), Is.EqualTo(BitConverter.SingleToInt32Bits(expected)));
    }
}
