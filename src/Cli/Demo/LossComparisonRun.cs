using System.Diagnostics;
using SlothSharp.Losses;
using SlothSharp.Models;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Cli.Demo;

/// <summary>Per-step losses, time and peak memory of one training run.</summary>
internal sealed record RunResult(string Variant, List<double> Losses, double Seconds, double TokensPerSecond, long PeakBytes, string PeakKind);

/// <summary>One variant of the loss comparison: loads the shared random checkpoint, adds LoRA, trains with one loss.</summary>
internal static class LossComparisonRun
{
    public static RunResult Train(string variant, CompareShape cfg, string baseDir, DemoSettings s, List<(Tensor Ids, Tensor Labels)> batches,
                                  Device device, ScalarType dtype)
    {
        var onGpu = device.type == DeviceType.CUDA;
        var gpu = device.index < 0 ? 0 : device.index;
        if (onGpu) CudaDevice.Synchronize(gpu);
        else ResetPeakRss();
        var usedBefore = onGpu ? UsedGpuBytes(gpu) : 0;

        using var model = CausalLM.FromPretrained(baseDir, new LoadOptions { Device = device, ComputeDtype = dtype });
        model.AddLora(new LoraConfig(cfg.LoraRank, cfg.LoraAlpha), (long)s.Seed);
        var adapters = model.LoraParameters().Select(p => p.Value).ToList();
        using var opt = optim.AdamW(adapters, lr: s.LearningRate ?? 2e-3, weight_decay: 0.0);
        var head = model.LmHeadWeight;
        // The tiny CPU config has 256 tokens per step: 64-row chunks make both paths really chunk. Otherwise the
        // libraries' default byte budgets apply.
        var chunking = onGpu ? new CrossEntropyOptions() : new CrossEntropyOptions { ChunkRows = 64 };
        var losses = new List<double>();
        long peakGpu = 0;
        var tokensPerStep = batches[0].Ids.numel();
        var clock = Stopwatch.StartNew();
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask($"{variant,-8}", maxValue: batches.Count);
                foreach (var (idsCpu, labelsCpu) in batches)
                {
                    using var scope = NewDisposeScope();
                    var ids = idsCpu.to(device);
                    var labels = labelsCpu.to(device);
                    var hidden = model.Forward(ids);
                    var loss = variant switch
                    {
                        // What a TorchSharp user writes today: full logits, float32 upcast, cross_entropy.
                        "naive" => nn.functional.cross_entropy(hidden.matmul(head.t()).to(ScalarType.Float32).reshape(-1, head.shape[0]), labels.reshape(-1)),
                        "chunked" => ChunkedLinearLoss.CrossEntropy(hidden, head, null, labels, chunking),
                        _ => FusedLinearCrossEntropy.Apply(hidden, head, null, labels, chunking),
                    };
                    opt.zero_grad();
                    loss.backward();
                    opt.step();
                    var value = loss.to(ScalarType.Float64).item<double>();  // also synchronizes the step
                    losses.Add(value);
                    if (onGpu) peakGpu = Math.Max(peakGpu, UsedGpuBytes(gpu) - usedBefore);
                    var tps = tokensPerStep * losses.Count / clock.Elapsed.TotalSeconds;
                    task.Description = $"{variant,-8} loss {value:F4}  {tps:N0} tok/s";
                    task.Increment(1);
                }
            });
        var seconds = clock.Elapsed.TotalSeconds;
        return new RunResult(variant, losses, seconds, tokensPerStep * batches.Count / seconds,
            onGpu ? peakGpu : PeakRssBytes(), onGpu
                ? "peak GPU memory in use by the run's own process beyond its start (cudaMemGetInfo after every step): model, activations, caches, CUDA library workspaces"
                : "peak working set of the run's own process (VmHWM)");
    }

    private static long UsedGpuBytes(int device)
    {
        var (free, total) = CudaDevice.MemoryInfo(device);
        return total - free;
    }

    private static void ResetPeakRss()
    {
        GC.Collect();
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static long PeakRssBytes()
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException)
        {
            return Process.GetCurrentProcess().PeakWorkingSet64;
        }
    }
}
