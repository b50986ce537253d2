using System.Globalization;
using System.Text;
using SlothSharp.Training;

namespace SlothSharp.Cli;

/// <summary>The outputs of a fine-tuning run next to its adapter: losses.csv, loss.png (ScottPlot) and summary.md.</summary>
internal static class FinetuneReport
{
    public static void Write(string outDir, TrainResult result, TrainerOptions options, IReadOnlyList<(string Key, string Value)> facts,
                             string? extraMarkdown = null, IReadOnlyDictionary<int, double>? evalLosses = null)
    {
        Directory.CreateDirectory(outDir);
        var inv = CultureInfo.InvariantCulture;
        // The eval_loss column only when held-out data was given (empty on the steps it was not computed).
        var csv = new StringBuilder(evalLosses is null ? "step,loss,learning_rate\n" : "step,loss,learning_rate,eval_loss\n");
        for (var i = 0; i < result.Losses.Count; i++)
        {
            csv.Append(inv, $"{i + 1},{result.Losses[i].ToString("R", inv)},{result.LearningRates[i].ToString("R", inv)}");
            if (evalLosses is not null) csv.Append(',').Append(evalLosses.TryGetValue(i + 1, out var e) ? e.ToString("R", inv) : "");
            csv.Append('\n');
        }
        WriteAtomically(Path.Combine(outDir, "losses.csv"), csv.ToString());
        if (result.Losses.Count > 0) Plot(Path.Combine(outDir, "loss.png"), result.Losses);

        var md = new StringBuilder("# SlothSharp fine-tuning run\n\n");
        foreach (var (k, v) in facts) md.Append(inv, $"- {k}: {v}\n");
        md.Append(inv, $"- steps: {result.Steps} of {result.TotalSteps}{(result.Interrupted ? " (interrupted; resume with --resume)" : "")}\n");
        md.Append(inv, $"- LoRA: r {options.Lora.Rank}, alpha {options.Lora.Alpha}, dropout {options.Lora.Dropout}, targets {string.Join(",", options.Lora.TargetNames)}{(options.Lora.UseRslora ? ", rsLoRA" : "")}\n");
        md.Append(inv, $"- batch {options.BatchSize} × seq {options.SequenceLength} × grad-accum {options.GradientAccumulation}{(options.Packing ? ", packed" : ", padded")}; " +
                       $"AdamW lr {options.LearningRate}, {options.Schedule.ToString().ToLowerInvariant()} schedule, warmup {options.WarmupSteps}, " +
                       $"grad-clip {(options.MaxGradNorm is > 0 ? options.MaxGradNorm.Value.ToString(inv) : "off")}, seed {options.Seed}\n");
        if (result.Losses.Count > 0)
        {
            var k = Math.Min(10, result.Losses.Count);
            md.Append(inv, $"- loss: first {result.Losses[0]:F4}, last {result.Losses[^1]:F4} (mean of the first {k} steps {result.Losses.Take(k).Average():F4}, of the last {k} {result.Losses.TakeLast(k).Average():F4})\n");
        }
        if (evalLosses is { Count: > 0 })
        {
            var lastEval = evalLosses.MaxBy(kv => kv.Key);
            md.Append(inv, $"- eval loss: {lastEval.Value:F4} at step {lastEval.Key} (first {evalLosses.MinBy(kv => kv.Key).Value:F4}; {evalLosses.Count} evaluations, eval_loss in losses.csv)\n");
        }
        md.Append(inv, $"- tokens trained on: {result.Tokens:N0}; this session's wall time {result.Elapsed.TotalSeconds:F1} s\n");
        if (extraMarkdown is not null) md.Append('\n').Append(extraMarkdown).Append('\n');
        md.Append("\n![loss curve](loss.png)\n\nFiles: `adapter_config.json` + `adapter_model.safetensors` (PEFT LoRA adapter), `losses.csv`, `checkpoints/` (resume with `sloth finetune … --resume DIR`).\n");
        WriteAtomically(Path.Combine(outDir, "summary.md"), md.ToString());
    }

    private static void WriteAtomically(string path, string text)
    {
        var tmp = path + $".tmp-{Environment.ProcessId}";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }

    private static void Plot(string path, IReadOnlyList<double> losses)
    {
        var font = Path.Combine(AppContext.BaseDirectory, "Assets", "DejaVuSans.ttf");
        if (File.Exists(font)) ScottPlot.Fonts.AddFontFile("DejaVu Sans", font);
        var plot = new ScottPlot.Plot();
        var steps = Enumerable.Range(1, losses.Count).Select(i => (double)i).ToArray();
        var line = plot.Add.Scatter(steps, losses.ToArray());
        line.MarkerSize = losses.Count > 60 ? 0 : 4;
        line.LegendText = "training loss";
        plot.Title("Fine-tuning loss");
        plot.XLabel("step");
        plot.YLabel("cross-entropy (nats/token)");
        if (File.Exists(font)) plot.Font.Set("DejaVu Sans");
        var tmp = path + $".tmp-{Environment.ProcessId}.png";
        plot.SavePng(tmp, 1000, 520);
        File.Move(tmp, path, overwrite: true);
    }
}
