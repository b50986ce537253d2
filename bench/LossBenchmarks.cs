using System.Globalization;
using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using SlothSharp.Diagnostics;

namespace SlothSharp.Bench;

/// <summary>Forward + backward time of one LM-head loss shape (set by SLOTH_BENCH_SHAPE: one process per shape,
/// since TorchSharp cannot empty the CUDA caching allocator between shapes).</summary>
public class LmHeadLoss
{
    public static IEnumerable<string> ShapeSource() => [Environment.GetEnvironmentVariable("SLOTH_BENCH_SHAPE") ?? LossProblem.CeShapes[0]];
    public static IEnumerable<string> MethodSource() => LossProblem.Methods(ShapeSource().First().Split('x').Length == 4);

    [ParamsSource(nameof(ShapeSource))] public string Shape { get; set; } = "";
    [ParamsSource(nameof(MethodSource))] public string Method { get; set; } = "";

    private LossProblem _p = null!;

    [GlobalSetup]
    public void Setup()
    {
        _p = LossProblem.Create(Shape);
        _p.Step(Method);  // first run: cuBLAS handles, module loading, gradient buffers
        CudaDevice.Synchronize();
    }

    [Benchmark]
    public void ForwardBackward()
    {
        _p.Step(Method);
        CudaDevice.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup() => _p.Dispose();
}

/// <summary>Drives the loss benchmarks: one child process per shape for time (BenchmarkDotNet) and one per
/// (shape, method) for memory, then the report.</summary>
internal static class LossSuite
{
    private sealed record Memory(string Shape, string Method, long TransientBytes, long InputBytes, long GradBytes);

    /// <summary>Child mode: run one method twice, print the memory the process holds beyond inputs and gradients
    /// (cudaMemGetInfo delta: what the caching allocator kept, i.e. its peak).</summary>
    public static int MeasureMemory(string shape, string method)
    {
        // Initialize cuBLAS and load the kernels on a tiny problem first: with CUDA_MODULE_LOADING=EAGER, creating the
        // cuBLAS handle loads its whole kernel library (~0.5 GB), a one-time cost of the process, not of the method.
        using (var warm = LossProblem.Create(shape, tiny: true)) warm.Step(method);
        CudaDevice.Synchronize();
        var (free0, _) = CudaDevice.MemoryInfo();
        using var p = LossProblem.Create(shape);
        var (free1, _) = CudaDevice.MemoryInfo();
        p.Step(method);
        p.Step(method);
        CudaDevice.Synchronize();
        var (free2, _) = CudaDevice.MemoryInfo();
        var m = new Memory(shape, method, free1 - free2 - p.GradBytes, free0 - free1, p.GradBytes);
        Console.WriteLine("MEMORY " + JsonSerializer.Serialize(m));
        return 0;
    }

    public static void Run(string results, string device, bool quick)
    {
        var shapes = LossProblem.CeShapes.Append(LossProblem.GrpoShape).ToArray();
        var memory = new List<Memory>();
        var times = new Dictionary<(string, string), double>();
        foreach (var shape in shapes)
        {
            foreach (var method in LossProblem.Methods(shape.Split('x').Length == 4))
            {
                var output = Child(["--measure-memory", shape, method], null);
                var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("MEMORY ", StringComparison.Ordinal));
                if (line is null) { Console.WriteLine($"memory run failed for {shape} {method}:\n{output}"); continue; }
                memory.Add(JsonSerializer.Deserialize<Memory>(line[7..])!);
            }
            var timeOut = Child(["--suite", "loss-time", .. quick ? new[] { "--quick" } : []], shape);
            foreach (var l in timeOut.Split('\n').Where(l => l.StartsWith("TIME ", StringComparison.Ordinal)))
            {
                var parts = l.Split(' ');
                times[(parts[1], parts[2])] = double.Parse(parts[3], CultureInfo.InvariantCulture);
            }
        }
        Write(results, device, memory, times);
    }

    /// <summary>Child mode for one shape: BenchmarkDotNet over its methods; prints "TIME shape method ns".</summary>
    public static void RunTimes(BenchmarkDotNet.Configs.IConfig config)
    {
        var summary = BenchmarkRunner.Run<LmHeadLoss>(config);
        foreach (var r in summary.Reports.Where(r => r.ResultStatistics is not null))
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"TIME {r.BenchmarkCase.Parameters["Shape"]} {r.BenchmarkCase.Parameters["Method"]} {r.ResultStatistics!.Median}"));
    }

    /// <summary>Runs this benchmark program again with args (one process per measurement) and returns its output.</summary>
    private static string Child(string[] args, string? shape)
    {
        var env = new Dictionary<string, string>();
        if (shape is not null) env["SLOTH_BENCH_SHAPE"] = shape;
        // Load every CUDA module at context creation, before the baseline reading: otherwise kernels that libtorch
        // and cuBLAS load lazily on first use (about 1.3 GB here) would count as the method's transient memory.
        if (args.Contains("--measure-memory")) env["CUDA_MODULE_LOADING"] = "EAGER";
        var r = ChildProcess.RunSelf(args, new ChildProcessOptions { CaptureOutput = true, Environment = env });
        Console.WriteLine($"[child {string.Join(' ', args)} {shape}] exit {r.ExitCode}");
        return r.Output;
    }

    private static void Write(string dir, string device, List<Memory> memory, Dictionary<(string, string), double> times)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# LM-head losses, forward + backward (bf16, CUDA)").AppendLine();
        sb.AppendLine($"- device: {device}").AppendLine($"- date (UTC): {DateTime.UtcNow:yyyy-MM-dd HH:mm}");
        sb.AppendLine("- time: BenchmarkDotNet median of forward + backward + synchronize (gradients accumulate into existing buffers)");
        sb.AppendLine("- transient memory: GPU memory the process holds after two steps beyond inputs and gradients (cudaMemGetInfo delta, i.e. what the caching allocator kept: its peak); one fresh process per row, with CUDA_MODULE_LOADING=EAGER and the same method run first on a tiny problem, so that kernel code and cuBLAS initialization are not counted");
        sb.AppendLine("- naive = what a TorchSharp user writes today: bf16 logits, float32 upcast, cross_entropy (GRPO: log_softmax + gather)");
        sb.AppendLine("- TFLOP/s counts 6·N·H·V (logits, dX and dW GEMMs)").AppendLine();
        sb.AppendLine("| N × H × V | method | ms | TFLOP/s | transient GB | × naive time | × naive memory |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|");
        foreach (var shape in memory.Select(m => m.Shape).Distinct())
        {
            var d = shape.Split('x').Select(double.Parse).ToArray();
            var flops = d.Length == 4 ? 6 * d[0] * d[1] * d[2] * d[3] : 6 * d[0] * d[1] * d[2];
            times.TryGetValue((shape, "naive"), out var naiveNs);
            var naiveMem = memory.FirstOrDefault(m => m.Shape == shape && m.Method == "naive")?.TransientBytes ?? 0;
            foreach (var m in memory.Where(m => m.Shape == shape))
            {
                var ns = times.GetValueOrDefault((shape, m.Method), double.NaN);
                sb.AppendLine(inv, $"| {shape.Replace("x", " × ")} | {m.Method} | {ns / 1e6:F1} | {flops / ns / 1e3:F0} | {m.TransientBytes / 1e9:F2} | {ns / naiveNs:F2} | {(double)m.TransientBytes / naiveMem:F3} |");
            }
        }
        File.WriteAllText(Path.Combine(dir, "lm-head-losses.md"), sb.ToString());
        Console.WriteLine(sb.ToString());
    }
}
