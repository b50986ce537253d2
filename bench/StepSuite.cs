using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using SlothSharp.Diagnostics;
using static TorchSharp.torch;

namespace SlothSharp.Bench;

/// <summary>What one row of the step benchmark measured (one child process).</summary>
/// <param name="Checkpointing">0: none; k: every k-th decoder layer recomputed in backward (1 = all).</param>
/// <param name="LiveTensorGrowth">managed tensor wrappers alive after the timed window minus after warm-up, per step
/// (0 when nothing leaks: a leaked wrapper keeps its GPU memory until the .NET GC runs).</param>
internal sealed record StepRow(string Shape, string Path, int Checkpointing, long TokensPerStep, int TimedSteps, double Seconds,
                               double TokensPerSecond, double? PeakGb, double? IdleGb, double? ModelGb, double[] PhaseMs,
                               double FirstLoss, double LastLoss, string? Error = null, double LiveTensorGrowth = double.NaN);

/// <summary>The loss-match run: per-step losses of both paths from the same init and data.</summary>
internal sealed record StepLosses(string Shape, double[] Fused, double[] Reference);

/// <summary>
/// The QLoRA training-step benchmark (<c>--suite step</c>): tokens/s and peak GPU memory of the fused and the reference
/// path, with and without gradient checkpointing, on the Llama-3.2-1B and demo shapes (one fresh process per row, since
/// TorchSharp cannot empty the CUDA caching allocator), a phase profile per row, and a 100-step loss match. With
/// <c>--tiny</c> everything runs on the CPU on a tiny model (a smoke test of every code path; its numbers mean nothing).
/// </summary>
internal static class StepSuite
{
    private static readonly string[] Phases = ["forward", "loss", "backward", "optimizer"];

    /// <summary>A diverged run (NaN loss) is still a result to report, not a serialization error.</summary>
    private static readonly JsonSerializerOptions Json = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Transformers + PEFT + bitsandbytes on the same H100, 1B shape, 8 × 1024 tokens (/work/shared/NOTES.md).</summary>
    private static readonly (string Name, bool Checkpointing, double TokensPerSecond, double Gb)[] Anchors =
    [
        ("transformers + PEFT + bitsandbytes", false, 32_229, 36.7),
        ("  + Liger kernels", false, 35_277, 33.5),
        ("transformers + PEFT + bitsandbytes, checkpointing", true, 21_763, 16.6),
        ("  + Liger kernels, checkpointing", true, 23_865, 3.23),
    ];

    // ------------------------------------------------------------------ child modes

    /// <summary>Child: one row. Prints "STEPROW {json}". profileTimed (--profile-timed, CUDA): a profiler attached with
    /// collection off at start (ncu --profile-from-start off) collects the timed steps only, not the warm-up, where
    /// cuBLASLt times its candidate GEMMs.</summary>
    public static int RunRow(string shapeName, string path, int checkpointing, string deviceName, bool profileTimed = false)
    {
        var shape = StepShape.Get(shapeName);
        var device = deviceName == "cuda" ? CUDA : CPU;
        var onCuda = device.type == TorchSharp.DeviceType.CUDA;
        // fused-recompute-attention: the fused kernels with CausalLM.RecomputeAttention (SDPA made again in backward);
        // fused-recompute: with RecomputeNorms too (the norm outputs feeding projections made again in backward);
        // fused-recompute-norms: RecomputeNorms alone (the cheap one: a norm forward per consuming projection).
        // fused-softcap-flash: soft-capped attention (Gemma 2) by the one-pass kernels (CausalLM.SoftcapAttentionMethod).
        if (path is not ("fused" or "reference" or "fused-recompute-attention" or "fused-recompute" or "fused-recompute-norms" or "fused-softcap-flash"))
            throw new ArgumentException($"--path: '{path}' (fused, fused-recompute-attention, fused-recompute-norms, fused-recompute, fused-softcap-flash or reference)");
        var fused = path != "reference";
        var recomputeAttention = path is "fused-recompute-attention" or "fused-recompute";
        var recomputeNorms = path is "fused-recompute" or "fused-recompute-norms";
        var softcapFlash = path == "fused-softcap-flash";
        if (checkpointing < 0) throw new ArgumentException($"--checkpointing: {checkpointing} (0: none, k: every k-th layer)");

        // Warm-up on a one-layer model of the same heads and path: cuBLAS's handle and workspace and the kernels this
        // path loads lazily are then part of the idle reading, not of the step's memory.
        using (var warm = new StepWorkload(shape.WarmupConfig, 2, Math.Min(128, shape.SeqLen), device, fused, checkpointing, recomputeAttention, recomputeNorms, softcapFlash))
        {
            warm.Step(0).Dispose();
            warm.Synchronize();
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var memory = new MemoryWatch(onCuda);

        using var w = new StepWorkload(shape.Config, shape.Batch, shape.SeqLen, device, fused, checkpointing, recomputeAttention, recomputeNorms, softcapFlash);
        w.Synchronize();
        var modelGb = memory.Poll();
        double first = double.NaN;
        for (var i = 0; i < shape.Warmup; i++)
        {
            using var loss = w.Step(i, _ => memory.Poll());
            if (i == 0) first = loss.item<float>();
        }
        w.Synchronize();
        var liveBefore = Tensor.TotalCount;

        // Timed: no host synchronization inside the window; one before the clock starts and one before it stops.
        if (profileTimed && onCuda) CudaDevice.Profiler(true);
        var clock = Stopwatch.StartNew();
        Tensor? last = null;
        for (var i = 0; i < shape.Timed; i++)
        {
            last?.Dispose();
            last = w.Step(shape.Warmup + i);
        }
        w.Synchronize();
        var seconds = clock.Elapsed.TotalSeconds;
        if (profileTimed && onCuda) CudaDevice.Profiler(false);
        memory.Poll();
        var lastLoss = last!.item<float>();
        last.Dispose();
        var liveGrowth = (double)(Tensor.TotalCount - liveBefore) / shape.Timed;

        // Profile mode: synchronize after each phase.
        var phaseMs = new double[Phases.Length];
        for (var i = 0; i < shape.ProfileSteps; i++)
        {
            w.Synchronize();
            var t0 = Stopwatch.GetTimestamp();
            using var loss = w.Step(shape.Warmup + shape.Timed + i, p =>
            {
                w.Synchronize();
                memory.Poll();
                var now = Stopwatch.GetTimestamp();
                phaseMs[p] += Stopwatch.GetElapsedTime(t0, now).TotalMilliseconds;
                t0 = now;
            });
        }
        for (var p = 0; p < phaseMs.Length; p++) phaseMs[p] /= Math.Max(1, shape.ProfileSteps);

        var tokens = shape.TokensPerStep * shape.Timed;
        var row = new StepRow(shape.Name, path, checkpointing, shape.TokensPerStep, shape.Timed, seconds, tokens / seconds,
            memory.PeakGb, memory.IdleGb, modelGb, phaseMs, first, lastLoss, LiveTensorGrowth: liveGrowth);
        Console.WriteLine("STEPROW " + JsonSerializer.Serialize(row, Json));
        return 0;
    }

    /// <summary>Child: the loss match. Prints "STEPLOSS {json}".</summary>
    public static int RunLossMatch(string shapeName, string deviceName)
    {
        var shape = StepShape.Get(shapeName);
        var device = deviceName == "cuda" ? CUDA : CPU;
        double[] Run(bool fused)
        {
            using var w = new StepWorkload(shape.Config, shape.Batch, shape.SeqLen, device, fused, checkpointInterval: 0);
            var losses = new double[shape.LossSteps];
            for (var i = 0; i < losses.Length; i++)
            {
                using var loss = w.Step(i);
                losses[i] = loss.item<float>();
            }
            return losses;
        }
        var fusedLosses = Run(true);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var reference = Run(false);
        Console.WriteLine("STEPLOSS " + JsonSerializer.Serialize(new StepLosses(shape.Name, fusedLosses, reference), Json));
        return 0;
    }

    /// <summary>cudaMemGetInfo readings (total − free: what the process and its caching allocator hold on the device).</summary>
    internal sealed class MemoryWatch
    {
        private readonly bool _on;
        private readonly long _idle;
        private long _peak;

        public MemoryWatch(bool onCuda)
        {
            _on = onCuda;
            if (!_on) return;
            var (free, total) = CudaDevice.MemoryInfo();
            _idle = _peak = total - free;
        }

        /// <summary>Reads the device and returns GB above idle (null on the CPU).</summary>
        public double? Poll()
        {
            if (!_on) return null;
            var (free, total) = CudaDevice.MemoryInfo();
            var used = total - free;
            _peak = Math.Max(_peak, used);
            return (used - _idle) / 1e9;
        }

        public double? PeakGb => _on ? (_peak - _idle) / 1e9 : null;
        public double? IdleGb => _on ? _idle / 1e9 : null;
    }

    // ------------------------------------------------------------------ driver

    public static int Run(string results, string device, bool tiny)
    {
        var deviceArg = tiny ? "cpu" : "cuda";
        // SLOTHSHARP_STEP_SHAPES (comma list) picks shapes for a lease, e.g. the family shapes only.
        var shapes = tiny ? ["tiny"] : Environment.GetEnvironmentVariable("SLOTHSHARP_STEP_SHAPES") is { Length: > 0 } chosen
            ? chosen.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : StepShape.GpuShapes;
        var rows = new List<StepRow>();
        var clock = Stopwatch.StartNew();
        foreach (var shape in shapes)
            foreach (var path in StepShape.FamilyShapes.Contains(shape) ? ["fused"] : new[] { "fused", "reference" })
                foreach (var ckpt in CheckpointSettings(shape, path))
                {
                    var args = new[] { "--results", results, "--suite", "step-row", "--shape", shape, "--path", path, "--checkpointing", ckpt.ToString(CultureInfo.InvariantCulture), "--device", deviceArg };
                    var (ok, line, output) = Child(args, "STEPROW ");
                    rows.Add(ok ? JsonSerializer.Deserialize<StepRow>(line!, Json)!
                        : new StepRow(shape, path, ckpt, 0, 0, 0, 0, null, null, null, [], double.NaN, double.NaN, Tail(output)));
                    Console.WriteLine($"  {shape} {path} checkpointing={CkptName(ckpt)}: " +
                        (ok ? string.Create(CultureInfo.InvariantCulture, $"{rows[^1].TokensPerSecond:F0} tokens/s, peak {(rows[^1].PeakGb is { } g ? g.ToString("F2", CultureInfo.InvariantCulture) + " GB" : "n/a (CPU)")}") : "FAILED"));
                }
        var lossShape = tiny ? "tiny" : shapes.Contains("1b") ? "1b" : shapes[0];
        var (lossOk, lossLine, lossOutput) = Child(["--results", results, "--suite", "step-loss", "--shape", lossShape, "--device", deviceArg], "STEPLOSS ");
        var losses = lossOk ? JsonSerializer.Deserialize<StepLosses>(lossLine!, Json) : null;
        var report = Write(results, device, tiny, rows, losses, lossOk ? null : Tail(lossOutput), clock.Elapsed);
        Console.WriteLine(report);
        return rows.All(r => r.Error is null) && losses is not null ? 0 : 1;
    }

    internal static string Tail(string output) => string.Join(" / ", output.Split('\n').Where(l => l.Trim().Length > 0).TakeLast(4)).Replace("|", "\\|");

    /// <summary>0: none; 1: every layer; 2: every other layer (layers 0, 2, 4, …); 4: every fourth (1B: 4 of 16, the
    /// fused path only, to keep the suite within its GPU-time budget).</summary>
    private static int[] CheckpointSettings(string shape, string path) => shape switch
    {
        "1b" when path == "fused" => [0, 1, 2, 4],
        "mistral-7b" or "llama-3.1-8b" => [1, 2, 4],
        _ when StepShape.FamilyShapes.Contains(shape) => [0],
        _ => [0, 1, 2],
    };

    private static string CkptName(int k) => k switch { 0 => "no", 1 => "all layers", 2 => "every other layer", _ => $"every {k}th layer" };

    /// <summary>The caching allocator's setting for the children, read by libtorch at its first CUDA allocation (so it
    /// must be in the process environment before start: .NET's Environment.SetEnvironmentVariable does not reach
    /// the C environment). Expandable segments let freed blocks be reused across sizes, so cudaMemGetInfo's peak
    /// measures live data rather than fragmentation. An explicit PYTORCH_CUDA_ALLOC_CONF of the caller wins.</summary>
    internal static readonly string AllocatorConfig =
        Environment.GetEnvironmentVariable("PYTORCH_CUDA_ALLOC_CONF") is { Length: > 0 } given ? given : "expandable_segments:True";

    internal static (bool Ok, string? Line, string Output) Child(string[] args, string prefix)
    {
        var r = ChildProcess.RunSelf(args, new ChildProcessOptions
        {
            CaptureOutput = true,
            Environment = new Dictionary<string, string> { ["PYTORCH_CUDA_ALLOC_CONF"] = AllocatorConfig },
        });
        var line = r.Output.Split('\n').FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
        if (r.ExitCode != 0 || line is null)
        {
            Console.WriteLine($"[child {string.Join(' ', args)}] exit {r.ExitCode}:\n{r.Output}");
            return (false, null, r.Output);
        }
        return (true, line[prefix.Length..].TrimEnd('\r'), r.Output);
    }

    /// <summary>Tolerance of the loss match: two bf16 ulps relative to the reference loss (2⁻⁷·|loss|).</summary>
    public static double Tolerance(double referenceLoss) => Math.Abs(referenceLoss) / 128;

    private static string Write(string dir, string device, bool tiny, List<StepRow> rows, StepLosses? losses, string? lossError, TimeSpan elapsed)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(tiny ? "# QLoRA training step (CPU smoke test, tiny shape: the numbers mean nothing)" : "# QLoRA training step, Llama shapes (bf16, CUDA)").AppendLine();
        sb.AppendLine($"- device: {device}").AppendLine($"- date (UTC): {DateTime.UtcNow:yyyy-MM-dd HH:mm}; suite wall time {elapsed.TotalMinutes:F1} min");
        var s0 = StepShape.Get(tiny ? "tiny" : "1b");
        sb.AppendLine(inv, $"- step: random NF4 weights made in memory (seed 0; NF4 double quantization, blocksize 64), LoRA r16/alpha 32 on q,k,v,o,gate,up,down (float32 adapters), bf16 compute, AdamW (lr 2e-4, betas 0.9/0.999, eps 1e-8, no weight decay: as in round 2) on the adapters, {s0.Batch} × {s0.SeqLen} random token ids per step ({StepWorkload.DistinctBatches} fixed batches, cycled), loss through FusedLinearCrossEntropy on the shifted labels, SDPA attention");
        sb.AppendLine("- paths: **fused** = `UseFusedKernels = true` (RMSNorm, RoPE, SwiGLU kernels; NF4+LoRA autograd node that re-dequantizes W in backward); **reference** = `UseFusedKernels = false` (plain TorchSharp ops, same NF4 weights); checkpointing = `GradientCheckpointing` with `GradientCheckpointingInterval` k (every k-th decoder layer, from layer 0, recomputed in backward: all layers, or every other one)");
        sb.AppendLine("- LoRA branch in the compute dtype (bf16; A and B cast per forward, float32 parameters and gradients); optimizer: SlothSharp's FusedAdamW (flat buffers, torch's AdamW rule)");
        sb.AppendLine(inv, $"- allocator: PYTORCH_CUDA_ALLOC_CONF={AllocatorConfig} in every child process");
        sb.AppendLine("- live tensors/step: managed tensor wrappers alive after the timed window minus before it, divided by the timed steps (0 = no leak; a leaked wrapper holds its GPU memory until the .NET GC runs)");
        sb.AppendLine(inv, $"- tokens/s: {s0.Timed} timed steps after {s0.Warmup} warm-up steps, one device synchronize before the clock starts and one before it stops, no host sync inside the window other than the ones listed in README.md (Training-step speed and memory); tokens = batch × sequence length per step");
        sb.AppendLine("- peak GB: cudaMemGetInfo (total − free) of the device, polled after every phase of the warm-up and profile steps and after the timed window, maximum minus the idle reading taken after CUDA context creation and a one-layer warm-up step of the same path (so the context, cuBLAS's handle/workspace and lazily loaded kernels are excluded). It includes weights, adapters, AdamW state, activations and whatever the caching allocator reserved (reserved ≥ allocated): TorchSharp exposes no allocator statistics, so this is stricter than PyTorch's peak allocated. One fresh process per row. Assumes nothing else uses the GPU.");
        sb.AppendLine(inv, $"- phase ms: profile mode only ({s0.ProfileSteps} extra steps after the timed window, with a synchronize after each phase; averages). With the fused loss the head's gradient is computed during the loss forward.");
        sb.AppendLine();
        sb.AppendLine("Anchors (quoted, not re-run: bitsandbytes is not installed on the GPU machine, so they cannot be measured in the same lease; H100, 2026-11-23, 1B shape, 8 × 1024 tokens, PyTorch's peak allocated):").AppendLine();
        foreach (var a in Anchors)
            sb.AppendLine(inv, $"- {a.Name.Trim()}: {a.TokensPerSecond:N0} tokens/s at {a.Gb} GB");
        sb.AppendLine("- demo shape: transformers + PEFT + bitsandbytes 64,452 tokens/s at 17.8 GB; + Liger 69,300 at 17.0 GB; SlothSharp demo (fused loss, plain decoder) 66,783 at 6.08 GB process peak");
        sb.AppendLine().AppendLine("Target (issue 14, 1B shape): ≥ 65,000 tokens/s and ≤ 11 GB.").AppendLine();
        sb.AppendLine("| shape | path | checkpointing | tokens/s | × anchor | peak GB | model GB | forward ms | loss ms | backward ms | optimizer ms | loss first → last | live tensors/step |");
        sb.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
        foreach (var r in rows)
        {
            if (r.Error is not null)
            {
                sb.AppendLine($"| {r.Shape} | {r.Path} | {CkptName(r.Checkpointing)} | FAILED: {r.Error} ||||||||||");
                continue;
            }
            var anchor = r.Shape == "1b" ? Anchors.First(a => a.Checkpointing == (r.Checkpointing > 0)).TokensPerSecond : double.NaN;
            string Gb(double? g) => g is { } v ? v.ToString("F2", inv) : "n/a";
            sb.AppendLine(inv, $"| {r.Shape} | {r.Path} | {CkptName(r.Checkpointing)} | {r.TokensPerSecond:F0} | {(double.IsNaN(anchor) ? "–" : (r.TokensPerSecond / anchor).ToString("F2", inv))} | {Gb(r.PeakGb)} | {Gb(r.ModelGb)} | {string.Join(" | ", r.PhaseMs.Select(p => p.ToString("F1", inv)))} | {r.FirstLoss:F4} → {r.LastLoss:F4} | {r.LiveTensorGrowth:F1} |");
        }
        if (rows.FirstOrDefault(r => r.IdleGb is not null) is { } idle)
            sb.AppendLine().AppendLine(inv, $"Idle reading subtracted (context + warm-up, first row): {idle.IdleGb:F2} GB.");
        sb.AppendLine().AppendLine("## Loss match: fused vs reference").AppendLine();
        if (losses is null) sb.AppendLine($"FAILED: {lossError}");
        else
        {
            var diffs = losses.Fused.Zip(losses.Reference, (f, r) => Math.Abs(f - r)).ToArray();
            var worst = Enumerable.Range(0, diffs.Length).MaxBy(i => diffs[i] / Tolerance(losses.Reference[i]));
            var pass = Enumerable.Range(0, diffs.Length).All(i => diffs[i] <= Tolerance(losses.Reference[i]));
            sb.AppendLine(inv, $"{diffs.Length} steps on the {losses.Shape} shape, same init and data, no checkpointing. Max |Δloss| = {diffs.Max():E2} " +
                $"(step {worst + 1}: fused {losses.Fused[worst]:F5}, reference {losses.Reference[worst]:F5}); tolerance per step 2⁻⁷·|reference loss| " +
                $"(two bf16 ulps): **{(pass ? "PASS" : "FAIL")}** at every step. Loss {losses.Reference[0]:F4} → {losses.Reference[^1]:F4} (reference).");
            sb.AppendLine().AppendLine("Files: `step-loss.csv` (step, fused, reference, |Δ|, tolerance), `step-loss.png`, `step-loss-diff.png`.");
            WriteLossCsv(dir, losses);
            try
            {
                PlotLosses(dir, losses);
            }
            catch (Exception e)  // a plotting problem (Skia, fonts) must not cost the measurements
            {
                sb.AppendLine().AppendLine($"(the plots could not be drawn: {e.GetType().Name}: {e.Message})");
            }
        }
        var text = sb.ToString();
        var path = Path.Combine(dir, "step.md");
        File.WriteAllText(path + ".tmp", text);
        File.Move(path + ".tmp", path, overwrite: true);
        return text;
    }

    private static void WriteLossCsv(string dir, StepLosses l)
    {
        var inv = CultureInfo.InvariantCulture;
        var csv = new StringBuilder("step,fused,reference,abs_diff,tolerance\n");
        for (var i = 0; i < l.Fused.Length; i++)
            csv.AppendLine(inv, $"{i + 1},{l.Fused[i]:R},{l.Reference[i]:R},{Math.Abs(l.Fused[i] - l.Reference[i]):R},{Tolerance(l.Reference[i]):R}");
        File.WriteAllText(Path.Combine(dir, "step-loss.csv"), csv.ToString());
    }

    private static void PlotLosses(string dir, StepLosses l)
    {
        var font = Path.Combine(AppContext.BaseDirectory, "Assets", "DejaVuSans.ttf");
        if (File.Exists(font)) ScottPlot.Fonts.AddFontFile("DejaVu Sans", font);
        void UseFont(ScottPlot.Plot p)
        {
            if (File.Exists(font)) p.Font.Set("DejaVu Sans");
        }
        var steps = Enumerable.Range(1, l.Fused.Length).Select(i => (double)i).ToArray();
        var curves = new ScottPlot.Plot();
        var reference = curves.Add.Scatter(steps, l.Reference);
        reference.LegendText = "reference (plain TorchSharp ops)";
        reference.LineWidth = 3;
        reference.MarkerSize = 0;
        var fused = curves.Add.Scatter(steps, l.Fused);
        fused.LegendText = "fused";
        fused.MarkerSize = 4;
        curves.Title($"Training loss, {l.Shape} shape: fused vs reference path (same NF4 weights, init and data)");
        curves.XLabel("step");
        curves.YLabel("cross-entropy");
        curves.ShowLegend();
        UseFont(curves);
        curves.SavePng(Path.Combine(dir, "step-loss.png"), 1000, 560);

        var diff = new ScottPlot.Plot();
        var d = diff.Add.Scatter(steps, l.Fused.Zip(l.Reference, (a, b) => Math.Abs(a - b)).ToArray());
        d.LegendText = "|fused − reference|";
        var tol = diff.Add.Scatter(steps, l.Reference.Select(Tolerance).ToArray());
        tol.LegendText = "tolerance (2⁻⁷·|loss|)";
        tol.LinePattern = ScottPlot.LinePattern.Dashed;
        tol.MarkerSize = 0;
        diff.Title("Per-step loss difference");
        diff.XLabel("step");
        diff.YLabel("absolute difference");
        diff.ShowLegend();
        UseFont(diff);
        diff.SavePng(Path.Combine(dir, "step-loss-diff.png"), 1000, 420);
    }
}
