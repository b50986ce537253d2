using BenchmarkDotNet.Attributes;
using SlothSharp.References;
using static TorchSharp.torch;

namespace SlothSharp.Bench;

/// <summary>A 1 GiB device-to-device copy: the measured bandwidth ceiling of this run (bytes read + written).</summary>
public class CopyBandwidth
{
    public const long Bytes = 1L << 30;
    private Tensor _src = null!, _dst = null!;

    [GlobalSetup]
    public void Setup()
    {
        _src = rand([Bytes / 4], ScalarType.Float32, CUDA);
        _dst = empty([Bytes / 4], ScalarType.Float32, CUDA);
    }

    [Benchmark(OperationsPerInvoke = 10)]
    public void DeviceCopy1GiB()
    {
        for (var i = 0; i < 10; i++) _dst.copy_(_src);
        CudaDevice.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup() { _src.Dispose(); _dst.Dispose(); }
}

/// <summary>NF4 double dequantization (blocksize 64, nested 256) of one matrix, SlothSharp's kernel against the
/// TorchSharp-ops version, bf16 and fp16 output. Small matrices rotate among several input sets so that the
/// 50 MB L2 cannot serve repeated runs.</summary>
public class Nf4Dequant
{
    public const int LaunchesPerInvoke = 50;
    public const int TorchOpsPerInvoke = 5;

    [Params("4096x1024", "1024x4096", "14336x4096", "4096x14336", "8192x2048", "2048x8192", "28672x8192")]
    public string Shape { get; set; } = "";

    [Params("bf16", "fp16")]
    public string Dtype { get; set; } = "";

    private readonly List<Nf4Weight> _weights = [];
    private readonly List<Tensor> _outputs = [];

    public static long[] Dims(string shape) => shape.Split('x').Select(long.Parse).ToArray();
    public static double BytesPerElement => 0.5 + 1.0 / 64 + 4.0 / 16384 + 2;

    [GlobalSetup]
    public void Setup()
    {
        var dims = Dims(Shape);
        var n = dims[0] * dims[1];
        var sets = (int)Math.Clamp(Math.Ceiling(200e6 / (n * BytesPerElement)), 1, 16);
        var dtype = Dtype == "bf16" ? ScalarType.BFloat16 : ScalarType.Float16;
        using var cpuSource = randn(dims, ScalarType.Float32, generator: new Generator(42)) * 0.02f;
        using var cpuWeight = Nf4Weight.Quantize(cpuSource);
        for (var i = 0; i < sets; i++)
        {
            var w = cpuWeight.To(CUDA);
            w.DetachFromDisposeScope();
            _weights.Add(w);
            _outputs.Add(empty(dims, dtype, CUDA));
        }
        CudaDevice.Synchronize();
    }

    [Benchmark(OperationsPerInvoke = LaunchesPerInvoke)]
    public void SlothSharp()
    {
        for (var i = 0; i < LaunchesPerInvoke; i++) _weights[i % _weights.Count].DequantizeInto(_outputs[i % _outputs.Count]);
        CudaDevice.Synchronize();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = TorchOpsPerInvoke)]
    public void TorchSharpOps()
    {
        var dtype = Dtype == "bf16" ? ScalarType.BFloat16 : ScalarType.Float16;
        for (var i = 0; i < TorchOpsPerInvoke; i++) Nf4DequantizeReference.Dequantize(_weights[i % _weights.Count], dtype).Dispose();
        CudaDevice.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var w in _weights) w.Dispose();
        foreach (var o in _outputs) o.Dispose();
        _weights.Clear();
        _outputs.Clear();
    }
}
