using System.Globalization;
using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using SlothSharp.Diagnostics;
using SlothSharp.Losses;

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
        // SLOTH_CLEAR_GRADS=1 (the ce-sweep suite): grads set to null before each step, as the Python anchors measure.
        p.ClearGrads = Environment.GetEnvironmentVariable("SLOTH_CLEAR_GRADS") == "1";
        var (free1, _) = CudaDevice.MemoryInfo();
        var handOffs = FusedCrossEntropyTuning.HandOffs;
        p.Step(method);
        CudaDevice.Synchronize();
        var (freeStep1, _) = CudaDevice.MemoryInfo();
        p.Step(method);
        CudaDevice.Synchronize();
        var (free2, _) = CudaDevice.MemoryInfo();
        var m = new Memory(shape, method, free1 - free2 - p.GradBytes, free0 - free1, p.GradBytes);
        Console.WriteLine("MEMORY " + JsonSerializer.Serialize(m));
        Console.WriteLine($"HANDOFFS {FusedCrossEntropyTuning.HandOffs - handOffs}/2");
        Console.WriteLine($"RESERVED after step 1: {(free1 - freeStep1) / 1e9:F3} GB, after step 2: {(free1 - free2) / 1e9:F3} GB, gradients {p.GradBytes / 1e9:F3} GB");
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
    internal static string Child(string[] args, string? shape, Dictionary<string, string>? extra = null)
    {
        var env = extra is null ? new Dictionary<string, string>() : new Dictionary<string, string>(extra);
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

/// <summary>
/// --suite ce-sweep: the fused cross-entropy's variants (chunk rows, dW accumulation) against naive TorchSharp on the
/// issue-15 shapes, in one run: per shape one child process times every variant (median of SLOTH_CE_ITERS steps after
/// two warm-up steps, each step synchronized) and measures its accuracy against a float32 computation on the same bf16
/// values; per (shape, variant) one child measures transient memory (cudaMemGetInfo delta, as the loss suite).
/// Gradients are set to null before each step (as the Python anchors do), so a function's own dX/dW become .grad.
/// Environment: SLOTH_CE_SHAPES (comma list), SLOTH_CE_VARIANTS (comma list: naive, fused, fused-r{rows}[-fp32dw],
/// fused-b{MiB}, -t{threads}, -nounit, -nohandoff, -profile), SLOTH_CE_ITERS (default 10), SLOTH_CE_MEMORY_VARIANTS (which of those get a memory
/// child; default <see cref="DefaultMemoryVariants"/>), SLOTH_CE_MEMORY=0 to skip the memory children.
/// Data: the NOTES.md recipe, all labels valid. Writes ce-sweep.md and ce-sweep.json.
/// </summary>
internal static class CeSweep
{
    public static readonly string[] DefaultShapes = ["16384x4096x128256", "8192x2304x256000"];
    /// <summary>Phase 3 (rounds 4 and 5): the default (chunk GEMMs through the tuned cuBLASLt GEMM, 472 MiB even chunks:
    /// 7 × 1792 + 2 × 1920 rows at 16384 × 128256, 7 × 896 + 2 × 960 at 8192 × 256000), the same through TorchSharp's
    /// matmul, with cuBLASLt's untuned first choice, with the tuner's wide search, with round 3's 448 MiB budget, with
    /// 2048-row chunks (over the memory target), with the CE kernel's rows in flight capped at one per SM, and the
    /// profile (each piece synchronized and timed: slower, for the breakdown only). Every variant tunes afresh.</summary>
    public static readonly string[] DefaultVariants =
        ["naive", "fused", "fused-profile", "fused-torchgemm", "fused-untuned", "fused-wide", "fused-budget448", "fused-r2048", "fused-g132"];

    // NaN (a failed variant) must survive the round trip through the child's output.
    private static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Variants that get a memory child by default (each child is a fresh process: seconds each).</summary>
    public static readonly string[] DefaultMemoryVariants = ["fused", "fused-torchgemm", "fused-r2048"];

    internal sealed record Row(string Shape, string Method, double Ms, double MsMin, double RelDx, double RelDw,
                               double Loss, double LossRelErr, string? Error);

    private static string[] List(string name, string[] fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : fallback;

    public static int Run(string results, string device)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var shapes = List("SLOTH_CE_SHAPES", DefaultShapes);
        var variants = List("SLOTH_CE_VARIANTS", DefaultVariants);
        var memoryOn = Environment.GetEnvironmentVariable("SLOTH_CE_MEMORY") != "0" && LossProblem.Dev.type == TorchSharp.DeviceType.CUDA;
        var memoryVariants = List("SLOTH_CE_MEMORY_VARIANTS", DefaultMemoryVariants);
        var rows = new List<Row>();
        var memory = new Dictionary<(string, string), long>();
        var handOffs = new Dictionary<(string, string), string>();
        var profiles = new List<string>();
        var tuning = new List<string>();
        foreach (var shape in shapes)
        {
            var t0 = clock.Elapsed.TotalSeconds;
            var output = LossSuite.Child(["--suite", "ce-sweep-shape"], shape);
            Console.WriteLine($"ce-sweep {shape}: time + accuracy child {clock.Elapsed.TotalSeconds - t0:F0} s");
            foreach (var l in output.Split('\n').Where(l => l.StartsWith("SWEEP ", StringComparison.Ordinal)))
                rows.Add(JsonSerializer.Deserialize<Row>(l[6..], Json)!);
            profiles.AddRange(output.Split('\n').Where(l => l.StartsWith("PROFILE ", StringComparison.Ordinal)).Select(l => l[8..].TrimEnd()));
            tuning.AddRange(output.Split('\n').Where(l => l.StartsWith("TUNING ", StringComparison.Ordinal)).Select(l => $"{shape}: {l[7..].TrimEnd()}"));
            if (!output.Contains("SWEEP ", StringComparison.Ordinal)) Console.WriteLine($"sweep child failed for {shape}:\n{output}");
            if (!memoryOn) continue;
            foreach (var v in memoryVariants.Where(variants.Contains))
            {
                var m = LossSuite.Child(["--measure-memory", shape, v], null, new() { ["SLOTH_CLEAR_GRADS"] = "1" });
                var line = m.Split('\n').FirstOrDefault(l => l.StartsWith("MEMORY ", StringComparison.Ordinal));
                if (line is null) { Console.WriteLine($"memory run failed for {shape} {v}:\n{m}"); continue; }
                using var doc = JsonDocument.Parse(line[7..]);
                memory[(shape, v)] = doc.RootElement.GetProperty("TransientBytes").GetInt64();
                if (m.Split('\n').FirstOrDefault(l => l.StartsWith("HANDOFFS ", StringComparison.Ordinal)) is { } h) handOffs[(shape, v)] = h[9..].Trim();
                foreach (var l in m.Split('\n').Where(l => l.StartsWith("RESERVED ", StringComparison.Ordinal) || l.StartsWith("HANDOFFS ", StringComparison.Ordinal)))
                    Console.WriteLine($"memory {shape} {v}: {l.Trim()}");
            }
        }
        var inv = CultureInfo.InvariantCulture;
        var commit = Environment.GetEnvironmentVariable("SLOTHSHARP_COMMIT") ?? ReadCommit();
        var sb = new StringBuilder();
        sb.AppendLine("# Fused linear cross-entropy variants (bf16, CUDA, all rows valid)").AppendLine();
        sb.AppendLine($"- device: {device}; commit: {commit}; date (UTC): {DateTime.UtcNow:yyyy-MM-dd HH:mm}");
        sb.AppendLine("- time: median (and min) of forward + backward + synchronize over SLOTH_CE_ITERS steps after 2 warm-up steps; grads set to null before each step");
        sb.AppendLine("- transient: cudaMemGetInfo delta after two steps beyond inputs and the gradients (fresh process per row, grads set to null before each step)");
        sb.AppendLine("- accuracy: relative L2 error of dX, dW against float32 math on the same bf16 values; loss relative error");
        sb.AppendLine("- hand-offs: backwards (of the memory child's two steps) that made dW W.grad without a copy").AppendLine();
        sb.AppendLine("| N × H × V | method | ms | min ms | TFLOP/s (6NHV) | transient GB | hand-offs | rel dX | rel dW | loss rel err |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            var d = r.Shape.Split(':')[0].Split('x').Select(double.Parse).ToArray();
            var flops = 6 * d[0] * d[1] * d[2];
            var mem = memory.TryGetValue((r.Shape, r.Method), out var b) ? (b / 1e9).ToString("F2", inv) : "-";
            var ho = handOffs.GetValueOrDefault((r.Shape, r.Method), "-");
            if (r.Error is not null) { sb.AppendLine($"| {r.Shape} | {r.Method} | error: {r.Error} | | | {mem} | {ho} | | | |"); continue; }
            sb.AppendLine(inv, $"| {r.Shape.Replace("x", " × ")} | {r.Method} | {r.Ms:F1} | {r.MsMin:F1} | {flops / r.Ms / 1e9:F0} | {mem} | {ho} | {r.RelDx:0.00e+0} | {r.RelDw:0.00e+0} | {r.LossRelErr:0.0e+0} |");
        }
        if (profiles.Count > 0) sb.AppendLine().Append(ProfileMarkdown(profiles));
        if (tuning.Count > 0)
        {
            sb.AppendLine().AppendLine("## GEMM tuner (sloth_gemm): the choices each variant ran with (the tuner forgets between variants; a shape is tuned on its second call, or borrows the tuning of the same shape with another k)").AppendLine().AppendLine("```");
            foreach (var l in tuning) sb.AppendLine(l);
            sb.AppendLine("```");
        }
        File.WriteAllText(Path.Combine(results, "ce-sweep.md"), sb.ToString());
        File.WriteAllText(Path.Combine(results, "ce-sweep.json"), JsonSerializer.Serialize(new
        {
            device, commit, rows, memory = memory.Select(kv => new { shape = kv.Key.Item1, method = kv.Key.Item2, transientBytes = kv.Value }),
            handOffs = handOffs.Select(kv => new { shape = kv.Key.Item1, method = kv.Key.Item2, value = kv.Value }),
            profiles = profiles.Select(p => JsonDocument.Parse(p).RootElement).ToList(),
        }, new JsonSerializerOptions(Json) { WriteIndented = true }));
        Console.WriteLine(sb.ToString());
        Console.WriteLine($"ce-sweep: {clock.Elapsed.TotalSeconds:F0} s");
        return rows.Count > 0 && rows.All(r => r.Error is null) ? 0 : 1;
    }

    private static string ReadCommit()
    {
        // gpu-run unpacks the bundle's commit.txt next to the apps (…/apps/SlothSharp.Bench/ → …/commit.txt).
        var f = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "commit.txt"));
        return File.Exists(f) ? File.ReadAllText(f).Replace('\n', ' ').Trim() : "unknown";
    }

    /// <summary>Child for one shape (SLOTH_BENCH_SHAPE): the float32 reference, then time and accuracy of each variant.</summary>
    public static int RunShape()
    {
        var shape = Environment.GetEnvironmentVariable("SLOTH_BENCH_SHAPE") ?? DefaultShapes[0];
        var variants = List("SLOTH_CE_VARIANTS", DefaultVariants);
        var iters = int.TryParse(Environment.GetEnvironmentVariable("SLOTH_CE_ITERS"), out var it) && it > 0 ? it : 10;
        using var p = LossProblem.Create(shape);
        p.ClearGrads = true;
        var (refLoss, refDx, refDw) = Reference(p.X, p.W, p.Y);
        using var rdx = refDx;
        using var rdw = refDw;
        foreach (var v in variants)
        {
            Row row;
            var profiled = v.Split('-').Contains("profile");
            // Each variant tunes afresh (the tuner's choices are per process): an untuned or wide variant after the
            // default would otherwise run the default's tuned choices.
            SlothSharp.Ops.TunedGemm.ForgetTuning();
            try
            {
                for (var i = 0; i < 2; i++) p.Step(v);
                LossProblem.Sync();
                if (profiled) FusedCrossEntropyTuning.Profile = new CrossEntropyProfile();
                var times = new List<double>();
                for (var i = 0; i < iters; i++)
                {
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    p.Step(v);
                    LossProblem.Sync();
                    times.Add(sw.Elapsed.TotalMilliseconds);
                }
                if (profiled && FusedCrossEntropyTuning.Profile is { } prof)
                {
                    FusedCrossEntropyTuning.Profile = null;
                    Console.WriteLine("PROFILE " + JsonSerializer.Serialize(new
                    {
                        shape, variant = v, steps = iters, stepMs = times.Sum() / iters,
                        pieces = prof.Ms.Select(kv => new { piece = kv.Key, msPerStep = kv.Value / iters, callsPerStep = prof.Calls[kv.Key] / (double)iters }),
                    }, Json));
                }
                times.Sort();
                var loss = p.Step(v, readLoss: true);
                row = new Row(shape, v, times[times.Count / 2], times[0], RelErr(p.X.grad!, rdx), RelErr(p.W.grad!, rdw),
                              loss, Math.Abs(loss - refLoss) / Math.Abs(refLoss), null);
            }
            catch (Exception e)
            {
                FusedCrossEntropyTuning.Profile = null;
                row = new Row(shape, v, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN,
                              e.GetType().Name + ": " + e.Message.Split('\n')[0]);
            }
            p.X.grad = null;
            p.W.grad = null;
            Console.WriteLine("SWEEP " + JsonSerializer.Serialize(row, Json));
            // The choices this variant ran with (none for the variants that do not use the tuned GEMM).
            foreach (var line in SlothSharp.Ops.TunedGemm.TuningReport().Split('\n', StringSplitOptions.RemoveEmptyEntries)
                         .Where(l => l.StartsWith("device ", StringComparison.Ordinal)))
                Console.WriteLine($"TUNING {v}: {line}");
        }
        if (SlothSharp.Ops.TunedGemm.UnavailableReason is { } why) Console.WriteLine("TUNING unavailable: " + why);
        return 0;
    }

    /// <summary>The profile table: per shape, ms per step of each piece (synchronized), and what is left outside them
    /// (the autograd engine, its copies of returned gradients, freeing the previous step's .grad, Python-free overheads).</summary>
    private static string ProfileMarkdown(List<string> profiles)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("## Where the time goes (profile variant: every piece bracketed by device synchronizations)").AppendLine();
        sb.AppendLine("| shape | piece | calls/step | ms/step | share |").AppendLine("|---|---|---:|---:|---:|");
        foreach (var p in profiles)
        {
            using var doc = JsonDocument.Parse(p);
            var root = doc.RootElement;
            var shape = root.GetProperty("shape").GetString();
            var step = root.GetProperty("stepMs").GetDouble();
            var sum = 0.0;
            foreach (var piece in root.GetProperty("pieces").EnumerateArray())
            {
                var ms = piece.GetProperty("msPerStep").GetDouble();
                sum += ms;
                sb.AppendLine(inv, $"| {shape} | {piece.GetProperty("piece").GetString()} | {piece.GetProperty("callsPerStep").GetDouble():0.#} | {ms:F2} | {ms / step:P0} |");
            }
            sb.AppendLine(inv, $"| {shape} | outside the pieces (engine, gradient copies, .grad release) | | {step - sum:F2} | {(step - sum) / step:P0} |");
            sb.AppendLine(inv, $"| {shape} | **step (synchronized pieces)** | | **{step:F2}** | |");
        }
        return sb.ToString();
    }

    private static double RelErr(TorchSharp.torch.Tensor got, TorchSharp.torch.Tensor want)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        return (got.to(TorchSharp.torch.ScalarType.Float32) - want).norm().item<float>() / (double)want.norm().item<float>();
    }

    /// <summary>Mean cross-entropy (labels all in range), dX and dW in float32 from the bf16 values, 2048-row chunks.</summary>
    internal static (double Loss, TorchSharp.torch.Tensor Dx, TorchSharp.torch.Tensor Dw) Reference(TorchSharp.torch.Tensor x, TorchSharp.torch.Tensor w, TorchSharp.torch.Tensor y)
    {
        using var noGrad = TorchSharp.torch.no_grad();
        using var scope = TorchSharp.torch.NewDisposeScope();
        var f32 = TorchSharp.torch.ScalarType.Float32;
        var x32 = x.detach().to(f32);
        var w32 = w.detach().to(f32);
        var rowsTotal = x.shape[0];
        // Rows labelled -100 (":ignore7" problems) take no part: the mean runs over the kept rows.
        var n = (double)y.ne(-100).sum().item<long>();
        var dx = TorchSharp.torch.zeros_like(x32);
        var dw = TorchSharp.torch.zeros_like(w32);
        var total = TorchSharp.torch.zeros([], TorchSharp.torch.ScalarType.Float64, x.device);
        const long rows = 2048;
        for (long s = 0; s < rowsTotal; s += rows)
        {
            using var chunk = TorchSharp.torch.NewDisposeScope();
            var r = Math.Min(rows, rowsTotal - s);
            var xc = x32.narrow(0, s, r);
            var kept = y.narrow(0, s, r).ne(-100);
            var yc = y.narrow(0, s, r).clamp_min(0).unsqueeze(1);
            var keep = kept.to(TorchSharp.torch.ScalarType.Float32).unsqueeze(1);
            var z = xc.mm(w32.t());
            var lse = z.logsumexp(-1);
            total.add_(((lse - z.gather(1, yc).squeeze(1)) * keep.squeeze(1)).to(TorchSharp.torch.ScalarType.Float64).sum());
            z.sub_(lse.unsqueeze(1)).exp_();
            z.scatter_(1, yc, z.gather(1, yc) - 1);
            z.mul_(keep / n);
            dx.narrow(0, s, r).copy_(z.mm(w32));
            dw.addmm_(z.t(), xc);
        }
        var loss = total.item<double>() / n;
        return (loss, dx.MoveToOuterDisposeScope(), dw.MoveToOuterDisposeScope());
    }
}
