using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Against the golden vectors made with the real bitsandbytes (dequantize_4bit and quantize_4bit).</summary>
public class Nf4GoldenTests
{
    [TestCaseSource(typeof(TestEnv), nameof(TestEnv.GoldenFiles))]
    public void CpuDequantizeEqualsBitsandbytes(string file)
    {
        using var scope = NewDisposeScope();
        using var reader = new SafetensorsReader(TestEnv.Golden(file));
        using var w = Nf4Weight.FromSafetensors(reader, "weight");
        var bf16 = w.Dequantize(ScalarType.BFloat16);
        var fp16 = w.Dequantize(ScalarType.Float16);
        Assert.That(TestEnv.BitEqual(bf16, reader.Read("expected_bf16")), Is.True, "bf16 differs from bitsandbytes");
        Assert.That(TestEnv.BitEqual(fp16, reader.Read("expected_fp16")), Is.True, "fp16 differs from bitsandbytes");
        Assert.That(w.Dequantize().dtype, Is.EqualTo(ScalarType.BFloat16), "default output dtype is the original dtype");
    }

    [TestCaseSource(typeof(TestEnv), nameof(TestEnv.GoldenFiles))]
    public void QuantizeReproducesBitsandbytesBytes(string file)
    {
        using var scope = NewDisposeScope();
        using var reader = new SafetensorsReader(TestEnv.Golden(file));
        using var golden = Nf4Weight.FromSafetensors(reader, "weight");
        using var mine = Nf4Weight.Quantize(reader.Read("source_bf16"));
        Assert.That(TestEnv.BitEqual(mine.Packed, golden.Packed), Is.True, "packed NF4 bytes differ from bitsandbytes");
        Assert.That(mine.Shape, Is.EqualTo(golden.Shape));
        // The offset is a float32 mean whose rounding depends on the reduction order: allow an ulp or two.
        var myOffset = mine.NestedOffset.item<float>();
        var theirOffset = golden.NestedOffset.item<float>();
        Assert.That(Math.Abs(myOffset - theirOffset), Is.LessThanOrEqualTo(2 * float.Epsilon + Math.Abs(theirOffset) * 3e-7),
            "nested offset");
        AssertAbsmaxCodesEqualOrTies(mine, golden, reader.Read("source_bf16"));
    }

    /// <summary>Every absmax code equals bitsandbytes', or the value sits on the midpoint between the two codes' map
    /// values (a tie that the offset's last-ulp rounding may break either way).</summary>
    private static void AssertAbsmaxCodesEqualOrTies(Nf4Weight mine, Nf4Weight golden, Tensor source)
    {
        var myCodes = mine.AbsmaxCodes.data<byte>().ToArray();
        var theirCodes = golden.AbsmaxCodes.data<byte>().ToArray();
        var map = Nf4Tables.DynamicMap;
        var blocks = myCodes.Length;
        var absmax = source.flatten().to(ScalarType.Float32).abs().view(-1, mine.Blocksize).amax([1]).data<float>().ToArray();
        var nestedAbsmax = golden.NestedAbsmax.data<float>().ToArray();
        var offset = golden.NestedOffset.item<float>();
        var differing = 0;
        for (var b = 0; b < blocks; b++)
        {
            if (myCodes[b] == theirCodes[b]) continue;
            differing++;
            Assert.That(Math.Abs(myCodes[b] - theirCodes[b]), Is.EqualTo(1), $"block {b}: codes {myCodes[b]} vs {theirCodes[b]} are not neighbours");
            var x = (absmax[b] - offset) / nestedAbsmax[b / mine.NestedBlocksize];
            var midpoint = (map[myCodes[b]] + map[theirCodes[b]]) / 2.0;
            var gap = Math.Abs(map[myCodes[b]] - map[theirCodes[b]]);
            Assert.That(Math.Abs(x - midpoint), Is.LessThanOrEqualTo(1e-5 * gap + 1e-7),
                $"block {b}: codes differ ({myCodes[b]} vs {theirCodes[b]}) but {x} is not a tie at {midpoint}");
        }
        TestContext.Out.WriteLine($"absmax codes: {blocks - differing}/{blocks} equal, {differing} ties");
    }

    [Test]
    public void QuantizeThenDequantizeIsCloseToSource()
    {
        using var scope = NewDisposeScope();
        using var reader = new SafetensorsReader(TestEnv.Golden("bnb_nf4_mlp"));
        var source = reader.Read("source_bf16");
        using var w = Nf4Weight.Quantize(source);
        // NF4 keeps ~2-3 significant bits per element: the round trip error of N(0, σ) data is ~10% of its norm.
        TestEnv.AssertClose(w.Dequantize(ScalarType.Float32), source.to(ScalarType.Float32), 0.12, "NF4 round trip");
    }
}
