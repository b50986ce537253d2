using NUnit.Framework;
using SlothSharp.Gguf;
using SlothSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// libslothsharp's ggml quantizers (sloth_ggml_quantize: one per-block code path for the CPU and CUDA) against the C#
/// quantizers, which GgufQuantizerCompatTests holds byte-identical to llama.cpp: the native CPU path must give the C#
/// bytes for Q8_0, Q4_K, Q5_K and Q6_K on rows built to reach every branch (GgufKQuantLanesTests' edge cases: zero,
/// constant, one-signed, subnormal, huge, on-grid ties, stored scales rounding to 0), on random rows over 80 decades of
/// magnitude, and on non-finite values; the exporter wired to it must write the same file; bad arguments are clear
/// errors. The CUDA path is compared with the CPU path in the Gpu category.
/// </summary>
public class GgufNativeQuantizerTests() : TempDirFixture("gguf-native-quant")
{
    private static readonly GgmlType[] Types = [GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];
    private const int RowLength = 2304;  // 9 super-blocks, 72 Q8_0 blocks

    /// <summary>The C# scalar port of ggml's reference (the K-quants' oracle; Q8_0 has only one path).</summary>
    private static void Scalar(GgmlType type, ReadOnlySpan<float> x, Span<byte> y)
    {
        switch (type)
        {
            case GgmlType.Q4_K: KQuants.Q4_KScalar(x, y); break;
            case GgmlType.Q5_K: KQuants.Q5_KScalar(x, y); break;
            case GgmlType.Q6_K: KQuants.Q6_KScalar(x, y); break;
            default: LegacyQuants.Q8_0(x, y); break;
        }
    }

    /// <summary>Edge-case rows (every kind twice) then random normal rows scaled by 10^-40 .. 10^38, some with a few
    /// outliers (which overflow to infinity in the largest), back to back as one [rows, RowLength] matrix. The
    /// subnormal rows make the K-quant search divide by a subnormal range: infinite scales, 0 * inf NaNs.</summary>
    internal static float[] TestMatrix(out int rows)
    {
        var rng = new Random(20261207);
        var list = new List<float[]>();
        for (var r = 0; r < 36; r++) list.Add(GgufKQuantLanesTests.EdgeCaseRow(r, rng));
        float Normal() => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        for (var e = -40; e <= 38; e += 3)
        {
            var scale = MathF.Pow(10, e);
            var row = new float[RowLength];
            for (var i = 0; i < row.Length; i++) row[i] = Normal() * scale * (i % 61 == 0 && e % 2 == 0 ? 30f : 1f);
            list.Add(row);
        }
        rows = list.Count;
        return list.SelectMany(r => r).ToArray();
    }

    private static byte[] CSharpBytes(float[] x, GgmlType type) => GgmlQuantizer.Quantize(x, RowLength, type);

    private static byte[] NativeCpuBytes(float[] x, GgmlType type)
    {
        var bytes = new byte[x.Length / RowLength * GgmlTypeInfo.RowBytes(type, RowLength)];
        bytes.AsSpan().Fill(0xA5);  // every byte must be written
        NativeGgmlQuantizer.Quantize(x, RowLength, type, bytes, CPU);
        return bytes;
    }

    private static string FirstDifference(byte[] expected, byte[] actual, GgmlType type)
    {
        if (expected.Length != actual.Length) return $"{type}: {actual.Length} bytes, expected {expected.Length}";
        var same = expected.AsSpan().CommonPrefixLength(actual);
        if (same == expected.Length) return "";
        var rowBytes = GgmlTypeInfo.RowBytes(type, RowLength);
        return $"{type}: row {same / rowBytes} differs first at byte {same % rowBytes} of the row ({expected[same]:X2} expected, {actual[same]:X2})";
    }

    [TestCaseSource(nameof(Types))]
    public void NativeCpuMatchesTheCSharpQuantizer(GgmlType type)
    {
        var x = TestMatrix(out var rows);
        var expected = CSharpBytes(x, type);
        var scalar = new byte[expected.Length];
        for (var r = 0; r < rows; r++)
        {
            var rowBytes = (int)GgmlTypeInfo.RowBytes(type, RowLength);
            Scalar(type, x.AsSpan(r * RowLength, RowLength), scalar.AsSpan(r * rowBytes, rowBytes));
        }
        Assert.That(FirstDifference(expected, scalar, type), Is.Empty, "the C# dispatch and scalar paths disagree");
        Assert.That(FirstDifference(expected, NativeCpuBytes(x, type), type), Is.Empty);
    }

    /// <summary>NaN, infinities, float.MaxValue and -0 in the data: the native CPU path reproduces the C# bytes there
    /// too (Q8_0 writes a NaN or infinite scale; the K-quants' searches see NaN sums).</summary>
    [TestCaseSource(nameof(Types))]
    public void NativeCpuMatchesTheCSharpQuantizerOnNonFiniteValues(GgmlType type)
    {
        var x = NonFiniteMatrix();
        Assert.That(FirstDifference(CSharpBytes(x, type), NativeCpuBytes(x, type), type), Is.Empty);
    }

    /// <summary>Rows of random values in (-0.5, 0.5) with one special value every 37 elements: NaN, ±inf, ±MaxValue,
    /// -0, 65520 (rounds to an infinite f16), 1e-8.</summary>
    internal static float[] NonFiniteMatrix()
    {
        var rng = new Random(3);
        var specials = new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, -float.MaxValue, -0f, 65520f, 1e-8f };
        var x = new float[RowLength * specials.Length];
        for (var r = 0; r < specials.Length; r++)
            for (var i = 0; i < RowLength; i++)
                x[r * RowLength + i] = i % 37 == r ? specials[r] : (float)(rng.NextDouble() - 0.5);
        return x;
    }

    [Test]
    public void TensorOverloadQuantizesACpuTensor()
    {
        var x = TestMatrix(out var rows);
        using var t = tensor(x, [rows, RowLength]);
        foreach (var type in Types)
        {
            var bytes = new byte[rows * GgmlTypeInfo.RowBytes(type, RowLength)];
            NativeGgmlQuantizer.Quantize(t, RowLength, type, bytes);
            Assert.That(FirstDifference(CSharpBytes(x, type), bytes, type), Is.Empty);
        }
    }

    /// <summary>The exporter with <see cref="GgufExportOptions.QuantizeDevice"/> (here the native CPU twin, the code
    /// the GPU runs) writes the same file as the C# quantizers, for every output type that uses the four formats.</summary>
    [TestCase("q8_0")]
    [TestCase("q4_k_m")]
    [TestCase("q5_k_m")]
    [TestCase("q6_k")]
    public void ExportThroughTheNativeQuantizerWritesTheSameFile(string typeName) => AssertExportMatchesCSharp(Dir, typeName, CPU);

    /// <summary>A small synthetic model exported as <paramref name="typeName"/> by the C# quantizers and with
    /// QuantizeDevice = <paramref name="device"/>: the native types were used and the two files are equal.</summary>
    internal static void AssertExportMatchesCSharp(string dir, string typeName, Device device)
    {
        using var model = SyntheticModel.Create(hidden: 256, intermediate: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 300, tied: false, seed: 11);
        var tokDir = Path.Combine(TestEnv.TinyLlamaDir, "dense");
        var type = GgufOutputTypes.Parse(typeName);
        var cs = Path.Combine(dir, $"cs-{typeName}.gguf");
        var native = Path.Combine(dir, $"{device.type}-{typeName}.gguf");
        GgufExporter.Export(model.Config, model.Tensors, tokDir, cs, new GgufExportOptions { Type = type, Name = "m" });
        var result = GgufExporter.Export(model.Config, model.Tensors, tokDir, native, new GgufExportOptions { Type = type, Name = "m", QuantizeDevice = device });
        Assert.That(result.TensorTypes.Keys.Any(NativeGgmlQuantizer.Supports), Is.True, "the export used none of the native types");
        Assert.That(File.ReadAllBytes(native), Is.EqualTo(File.ReadAllBytes(cs)));
    }

    [Test]
    public void NativeArgumentErrorsNameTheArgument()
    {
        Native.EnsureLoaded();
        var x = new float[512];
        var y = new byte[1024];
        unsafe
        {
            fixed (float* px = x)
            fixed (byte* py = y)
            {
                nint xp = (nint)px, yp = (nint)py;
                void Expect(SlothStatus s, string part)
                {
                    Assert.That(s, Is.EqualTo(SlothStatus.ErrorInvalidArgument), part);
                    Assert.That(Native.LastErrorMessage, Does.Contain(part));
                }
                Expect(Native.TryGgmlQuantize(xp, 1, 512, 2, yp, -1, 0), "ggml_type = 2 is not supported");
                Expect(Native.TryGgmlQuantize(xp, 1, 512, 1, yp, -1, 0), "ggml_type = 1 is not supported");
                Expect(Native.TryGgmlQuantize(xp, 2, 160, 12, yp, -1, 0), "row_length = 160 is not a multiple of 256");
                Expect(Native.TryGgmlQuantize(xp, 1, 48, 8, yp, -1, 0), "row_length = 48 is not a multiple of 32");
                Expect(Native.TryGgmlQuantize(xp, 0, 256, 12, yp, -1, 0), "rows = 0");
                Expect(Native.TryGgmlQuantize(xp, 1, 0, 12, yp, -1, 0), "row_length = 0");
                Expect(Native.TryGgmlQuantize(0, 1, 256, 12, yp, -1, 0), "x is NULL");
                Expect(Native.TryGgmlQuantize(xp, 1, 256, 12, 0, -1, 0), "out is NULL");
                Expect(Native.TryGgmlQuantize(xp, 1, 256, 12, yp, -2, 0), "device = -2");
                Expect(Native.TryGgmlQuantize(xp, 1, 512, 14, xp + 1024, -1, 0), "out overlaps x");
                Expect(Native.TryGgmlQuantize(xp, 1L << 40, 1L << 30, 12, yp, -1, 0), "too large");
                Assert.That(Native.TryGgmlQuantize(xp, 2, 256, 14, yp, -1, 0), Is.EqualTo(SlothStatus.Ok));
            }
        }
    }

    [Test]
    public void ManagedArgumentErrorsAreClear()
    {
        var x = new float[512];
        Assert.That(() => NativeGgmlQuantizer.Quantize(x, 512, GgmlType.Q4_0, new byte[288], CPU),
            Throws.ArgumentException.With.Message.Contains("Q4_0 goes through GgmlQuantizer"));
        Assert.That(() => NativeGgmlQuantizer.Quantize(x, 128, GgmlType.Q4_K, new byte[288], CPU),
            Throws.ArgumentException.With.Message.Contains("not a positive multiple of Q4_K's block size 256"));
        Assert.That(() => NativeGgmlQuantizer.Quantize(x, 512, GgmlType.Q4_K, new byte[100], CPU),
            Throws.ArgumentException.With.Message.Contains("1 rows of Q4_K take 288 bytes; the destination holds 100"));
        Assert.That(() => NativeGgmlQuantizer.Quantize(x, 1024, GgmlType.Q8_0, new byte[68], CPU),
            Throws.ArgumentException.With.Message.Contains("512 elements are not whole rows of 1024"));
        using var half = zeros(2, 256, ScalarType.Float16);
        Assert.That(() => NativeGgmlQuantizer.Quantize(half, 256, GgmlType.Q6_K, new byte[420]),
            Throws.ArgumentException.With.Message.Contains("must be Float32"));
        using var strided = zeros(256, 2).t();
        Assert.That(() => NativeGgmlQuantizer.Quantize(strided, 256, GgmlType.Q6_K, new byte[420]),
            Throws.ArgumentException.With.Message.Contains("must be contiguous"));
    }
}

/// <summary>The CUDA kernels of sloth_ggml_quantize against the CPU twin, byte for byte (the CPU twin is
/// held to the C# quantizers, and so to llama.cpp, by <see cref="GgufNativeQuantizerTests"/>), through both managed
/// entry points; and a GGUF export quantized on the GPU against the C# one.</summary>
[Category("Gpu")]
public class GgufNativeQuantizerGpuTests() : TempDirFixture("gguf-native-quant-gpu")
{
    [SetUp]
    public void Cuda() => TestEnv.RequireCuda();

    [TestCase(GgmlType.Q8_0)]
    [TestCase(GgmlType.Q4_K)]
    [TestCase(GgmlType.Q5_K)]
    [TestCase(GgmlType.Q6_K)]
    public void CudaMatchesTheCpuBytes(GgmlType type)
    {
        var x = GgufNativeQuantizerTests.TestMatrix(out var rows);
        const int rowLength = 2304;
        var rowBytes = GgmlTypeInfo.RowBytes(type, rowLength);
        var cpu = new byte[rows * rowBytes];
        NativeGgmlQuantizer.Quantize(x, rowLength, type, cpu, CPU);
        Assert.That(cpu, Is.EqualTo(GgmlQuantizer.Quantize(x, rowLength, type)), "the CPU twin left the C# bytes");
        var gpu = new byte[cpu.Length];
        NativeGgmlQuantizer.Quantize(x, rowLength, type, gpu, CUDA);
        var same = cpu.AsSpan().CommonPrefixLength(gpu);
        Assert.That(same, Is.EqualTo(cpu.Length), $"row {same / rowBytes} differs first at byte {same % rowBytes}");

        // Many blocks (several thousand threads, 64-bit offsets past the first launch block) from a CUDA tensor.
        manual_seed(5);
        using var big = (randn(1536, 4096) * 0.02f).to(CUDA);
        var expected = new byte[1536 * GgmlTypeInfo.RowBytes(type, 4096)];
        using (var host = big.cpu()) NativeGgmlQuantizer.Quantize(host, 4096, type, expected);
        var actual = new byte[expected.Length];
        NativeGgmlQuantizer.Quantize(big, 4096, type, actual);
        Assert.That(actual, Is.EqualTo(expected));
    }

    /// <summary>Inputs with NaN and infinities: the managed quantizer sends such a tensor to the CPU twin (the device's
    /// canonical NaNs gave other Q4_K/Q5_K bytes on the H100, bench/results/2026-12-06-h100-round10), so the bytes
    /// agree whatever the device.</summary>
    [TestCase(GgmlType.Q8_0)]
    [TestCase(GgmlType.Q4_K)]
    [TestCase(GgmlType.Q5_K)]
    [TestCase(GgmlType.Q6_K)]
    public void CudaMatchesTheCpuBytesOnNonFiniteValues(GgmlType type)
    {
        var x = GgufNativeQuantizerTests.NonFiniteMatrix();
        var cpu = new byte[x.Length / 2304 * GgmlTypeInfo.RowBytes(type, 2304)];
        NativeGgmlQuantizer.Quantize(x, 2304, type, cpu, CPU);
        var gpu = new byte[cpu.Length];
        NativeGgmlQuantizer.Quantize(x, 2304, type, gpu, CUDA);
        Assert.That(gpu, Is.EqualTo(cpu));
    }

    [TestCase("q4_k_m")]
    [TestCase("q8_0")]
    public void ExportQuantizedOnTheGpuWritesTheSameFile(string typeName) =>
        GgufNativeQuantizerTests.AssertExportMatchesCSharp(Dir, typeName, CUDA);
}
