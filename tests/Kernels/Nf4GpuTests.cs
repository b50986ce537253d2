using NUnit.Framework;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The CUDA NF4 kernel: bit-identical to bitsandbytes and to the CPU kernel, on real TorchSharp CUDA tensors.</summary>
[Category("Gpu")]
public class Nf4GpuTests
{
    [SetUp]
    public void RequireCuda() => TestEnv.RequireCuda();

    [Test, Category("Sanitize")]
    public void KernelsRunWithTheExpectedArchitecture()
    {
        var arch = CudaDevice.KernelArch(0);
        var expected = Environment.GetEnvironmentVariable("SLOTHSHARP_EXPECT_ARCH");
        TestContext.Out.WriteLine($"{CudaDevice.Name(0)}: kernels run as __CUDA_ARCH__ {arch}");
        if (!string.IsNullOrEmpty(expected)) Assert.That(arch, Is.EqualTo(int.Parse(expected)));
        else Assert.That(arch, Is.GreaterThanOrEqualTo(750));
    }

    [TestCaseSource(typeof(TestEnv), nameof(TestEnv.GoldenFiles)), Category("Sanitize")]
    public void GoldenVectorsBitExactOnGpu(string file)
    {
        using var scope = NewDisposeScope();
        using var reader = new SafetensorsReader(TestEnv.Golden(file));
        using var cpuW = Nf4Weight.FromSafetensors(reader, "weight");
        using var w = cpuW.To(CUDA);
        var bf16 = w.Dequantize(ScalarType.BFloat16);
        Assert.That(bf16.device_type, Is.EqualTo(TorchSharp.DeviceType.CUDA));
        Assert.That(TestEnv.BitEqual(bf16, reader.Read("expected_bf16")), Is.True, "bf16");
        Assert.That(TestEnv.BitEqual(w.Dequantize(ScalarType.Float16), reader.Read("expected_fp16")), Is.True, "fp16");
        Assert.That(TestEnv.BitEqual(w.Dequantize(ScalarType.Float32), cpuW.Dequantize(ScalarType.Float32)), Is.True, "fp32 vs CPU");
    }

    private static readonly object[] Cases =
    [
        new object[] { 1L, 64, 256 }, new object[] { 31L, 64, 256 }, new object[] { 64L, 64, 256 },
        new object[] { 96L, 32, 32 }, new object[] { 4160L * 3 + 7, 64, 256 }, new object[] { 1L << 20, 64, 256 },
        new object[] { (1L << 20) + 33, 128, 64 }, new object[] { 999_999L, 256, 256 }, new object[] { 70_001L, 4096, 32 },
        new object[] { 16384L * 5, 64, 4096 },
    ];

    [TestCaseSource(nameof(Cases)), Category("Sanitize")]
    public void RandomWeightsMatchTheCpuKernelExactly(long n, int blocksize, int nested)
    {
        using var scope = NewDisposeScope();
        using var cpuW = Nf4Reference.Random([n], blocksize, nested, new Generator((ulong)(n + blocksize)));
        using var w = cpuW.To(CUDA);
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32 })
        {
            // Poison the output first so an unwritten element cannot pass.
            var gpu = full([n], float.NaN, dtype, CUDA);
            w.DequantizeInto(gpu);
            Assert.That(TestEnv.BitEqual(gpu, cpuW.Dequantize(dtype)), Is.True, $"{dtype}");
        }
    }

    [Test, Category("Sanitize")]
    public void SlicedCudaViewsAlignedAndMisaligned()
    {
        using var scope = NewDisposeScope();
        using var cpuW = Nf4Reference.Random([64, 100], 64, 256, new Generator(11));
        using var w = cpuW.To(CUDA);
        var expected = cpuW.Dequantize(ScalarType.BFloat16).flatten();
        foreach (var start in new long[] { 8, 13 })  // 16-byte aligned (vector path) and misaligned (scalar path)
        {
            var buffer = full([3 * 6400 + 16], -3.0f, ScalarType.BFloat16, CUDA);
            var view = buffer.narrow(0, start, 6400);
            w.DequantizeInto(view);
            Assert.That(TestEnv.BitEqual(view, expected), Is.True, $"view at {start}");
            Assert.That(buffer.narrow(0, 0, start).eq(-3.0f).all().item<bool>(), Is.True, "before");
            Assert.That(buffer.narrow(0, start + 6400, buffer.numel() - start - 6400).eq(-3.0f).all().item<bool>(), Is.True, "after");
        }
    }

    [Test]
    public unsafe void KernelCanBeCapturedInACudaGraphAndReplayed()
    {
        using var scope = NewDisposeScope();
        using var cpuW = Nf4Reference.Random([4096, 512], 64, 256, new Generator(12));
        using var w = cpuW.To(CUDA);
        var output = empty([4096, 512], ScalarType.BFloat16, CUDA);
        CudaDevice.Synchronize(0);
        var nodes = CudaDriver.CaptureAndReplay(stream =>
            Native.Nf4Dequantize(TensorInterop.DataPtr(w.Packed), TensorInterop.DataPtr(w.AbsmaxCodes),
                TensorInterop.DataPtr(w.NestedCodeMap), TensorInterop.DataPtr(w.NestedAbsmax), TensorInterop.DataPtr(w.NestedOffset),
                TensorInterop.DataPtr(w.CodeTable), w.NumElements, 64, 256, SlothDtype.Bf16,
                TensorInterop.DataPtr(output), 0, stream),
            replays: 3,
            beforeReplay: () => { output.fill_(float.NaN); CudaDevice.Synchronize(0); });
        Assert.That(nodes, Is.EqualTo(1), "one launch: one kernel node, no memcpy or memset");
        Assert.That(TestEnv.BitEqual(output, cpuW.Dequantize(ScalarType.BFloat16)), Is.True);
    }

    [Test, Category("Large")]
    public void MoreThanTwoToThe31ElementsUse64BitIndexing()
    {
        using var scope = NewDisposeScope();
        var (free, _) = CudaDevice.MemoryInfo(0);
        const long n = (1L << 31) + 16384 * 3 + 100;
        Assume.That(free, Is.GreaterThan(8L << 30), "needs ~7 GB of free GPU memory");
        const int bs = 64, nbs = 256, span = bs * nbs;
        var blocks = (n + bs - 1) / bs;
        cuda.manual_seed(13);  // a Generator(seed, CUDA) comes back as a CPU generator in TorchSharp 0.107
        var packed = randint(0, 256, [(n + 1) / 2], ScalarType.Byte, CUDA);
        var codes = randint(0, 256, [blocks], ScalarType.Byte, CUDA);
        var nested = rand([(blocks + nbs - 1) / nbs], ScalarType.Float32, CUDA) * 0.05f + 0.001f;
        using var w = Nf4Weight.FromTensors(packed, codes, nested, 0.0123f,
            tensor(Nf4Tables.DynamicMap.ToArray(), device: CUDA), tensor(Nf4Tables.Nf4Codes.ToArray(), device: CUDA), [n], bs, nbs);
        var output = full([n], float.NaN, ScalarType.BFloat16, CUDA);
        w.DequantizeInto(output);
        // Check windows at the start, straddling 2^31 and at the (partial) end against the CPU kernel.
        foreach (var start in new[] { 0L, ((1L << 31) / span - 1) * span, (n / span - 1) * span })
        {
            var len = Math.Min(3L * span, n - start);
            using var part = Nf4Weight.FromTensors(packed.narrow(0, start / 2, (len + 1) / 2).cpu(),
                codes.narrow(0, start / bs, (len + bs - 1) / bs).cpu(),
                nested.narrow(0, start / span, (len + span - 1) / span).cpu(), 0.0123f,
                tensor(Nf4Tables.DynamicMap.ToArray()), tensor(Nf4Tables.Nf4Codes.ToArray()), [len], bs, nbs);
            Assert.That(TestEnv.BitEqual(output.narrow(0, start, len), part.Dequantize(ScalarType.BFloat16)), Is.True, $"window at {start}");
        }
        Assert.That(output.isnan().any().item<bool>(), Is.False, "every element written");
    }
}
