using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The CUDA NF4 quantization (sloth_nf4_quantize on device memory): bit-identical to the CPU twin, which
/// matches bitsandbytes, on random shapes, every input dtype, constructed ties and the golden sources.</summary>
[Category("Gpu")]
public class Nf4QuantizeGpuTests
{
    [SetUp]
    public void RequireCuda() => TestEnv.RequireCuda();

    private static void AssertSameQuantization(Nf4Weight gpu, Nf4Weight cpu, string what)
    {
        Assert.That(gpu.Device.type, Is.EqualTo(TorchSharp.DeviceType.CUDA), $"{what}: the result stays on the GPU");
        Assert.That(TestEnv.BitEqual(gpu.Packed, cpu.Packed), Is.True, $"{what}: packed");
        Assert.That(TestEnv.BitEqual(gpu.NestedOffset, cpu.NestedOffset), Is.True,
            $"{what}: nested offset {gpu.NestedOffset.cpu().item<float>():R} vs {cpu.NestedOffset.item<float>():R}");
        Assert.That(TestEnv.BitEqual(gpu.NestedAbsmax, cpu.NestedAbsmax), Is.True, $"{what}: nested absmax");
        Assert.That(TestEnv.BitEqual(gpu.AbsmaxCodes, cpu.AbsmaxCodes), Is.True, $"{what}: absmax codes");
        Assert.That(gpu.Shape, Is.EqualTo(cpu.Shape));
    }

    private static readonly object[] Cases =
    [
        new object[] { new long[] { 1 }, 64, 256 }, new object[] { new long[] { 31 }, 64, 256 },
        new object[] { new long[] { 3, 65 }, 64, 256 }, new object[] { new long[] { 96 }, 32, 32 },
        new object[] { new long[] { 4160 * 3 + 7 }, 64, 256 }, new object[] { new long[] { 1024, 1024 }, 64, 256 },
        new object[] { new long[] { (1L << 20) + 33 }, 128, 64 }, new object[] { new long[] { 999_999 }, 256, 256 },
        new object[] { new long[] { 70_001 }, 4096, 32 }, new object[] { new long[] { 5, 16384 }, 64, 4096 },
        new object[] { new long[] { 2048, 1100 }, 32, 256 },
    ];

    [TestCaseSource(nameof(Cases)), Category("Sanitize")]
    public void RandomWeightsQuantizeExactlyAsOnTheCpu(long[] shape, int blocksize, int nested)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)(shape.Aggregate(1L, (a, b) => a * b) + blocksize));
        // Scales that vary by block, so the absmax values (and their offset) spread.
        var n = shape.Aggregate(1L, (a, b) => a * b);
        var scale = (rand([(n + blocksize - 1) / blocksize, 1], generator: gen) * 3 + 0.01).expand(-1, blocksize).flatten()[TensorIndex.Slice(0, n)];
        var source = (randn([n], generator: gen) * scale).reshape(shape);
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32 })
        {
            var src = source.to(dtype);
            using var cpu = Nf4Weight.Quantize(src, blocksize, nested);
            using var gpu = Nf4Weight.Quantize(src.to(CUDA), blocksize, nested);
            AssertSameQuantization(gpu, cpu, $"{dtype}");
        }
    }

    /// <summary>Values exactly on the NF4 thresholds (after the scale), zeros, an all-zero block, equal absmax
    /// values (nested absmax 0 for a one-block weight) and values on the 8-bit map's midpoints: every tie resolves
    /// the same way on both devices.</summary>
    [Test, Category("Sanitize")]
    public void TiesResolveAsOnTheCpu([Values(ScalarType.Float32, ScalarType.BFloat16)] ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        float[] thresholds = [0.03979014977812767f, 0.3893125355243683f, 0.6427869200706482f, 0.8614784181118011f,
            0.5016634166240692f, 0.2035212516784668f, 0.2920137718319893f, 0.1202552504837513f, -0.33967943489551544f,
            -0.13791173323988914f, -0.045525018125772476f, -0.23460740596055984f, -0.6106329262256622f,
            -0.4599952697753906f, -0.8480964004993439f];
        var values = new List<float>();
        for (var block = 0; block < 64; block++)
        {
            var absmax = block == 5 ? 0f : block % 3 == 0 ? 1f : 0.5f + block / 128f;
            var row = new float[64];
            row[0] = absmax;
            for (var i = 1; i < 64; i++) row[i] = absmax * thresholds[i % thresholds.Length] * (i % 2 == 0 ? 1 : -1) * (block == 5 ? 0 : 1);
            values.AddRange(row);
        }
        var source = tensor(values.ToArray()).to(dtype);
        using var cpu = Nf4Weight.Quantize(source);
        using var gpu = Nf4Weight.Quantize(source.to(CUDA));
        AssertSameQuantization(gpu, cpu, "ties");
        // A single block: the nested absmax is 0 and every code comes from the NaN path.
        var one = full([64], 0.25f).to(dtype);
        using var cpu1 = Nf4Weight.Quantize(one);
        using var gpu1 = Nf4Weight.Quantize(one.to(CUDA));
        AssertSameQuantization(gpu1, cpu1, "one block");
    }

    [TestCaseSource(typeof(TestEnv), nameof(TestEnv.GoldenFiles)), Category("Sanitize")]
    public void GoldenSourcesQuantizeExactlyAsOnTheCpu(string file)
    {
        using var scope = NewDisposeScope();
        using var reader = new SafetensorsReader(TestEnv.Golden(file));
        using var golden = Nf4Weight.FromSafetensors(reader, "weight");
        var source = reader.Read("source_bf16");
        using var cpu = Nf4Weight.Quantize(source, golden.Blocksize, golden.NestedBlocksize);
        using var gpu = Nf4Weight.Quantize(source.to(CUDA), golden.Blocksize, golden.NestedBlocksize);
        AssertSameQuantization(gpu, cpu, file);
        Assert.That(TestEnv.BitEqual(gpu.Packed, golden.Packed), Is.True, "packed bytes equal bitsandbytes'");
    }

    [Test]
    public void NonFiniteInputIsRejectedBeforeTheKernel()
    {
        using var scope = NewDisposeScope();
        var w = randn(4, 64);
        w[1, 2] = tensor(float.PositiveInfinity);
        Assert.Throws<ArgumentException>(() => Nf4Weight.Quantize(w.to(CUDA)));
    }
}
