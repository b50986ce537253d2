using System.Globalization;
using System.Text;
using SlothSharp.Models;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli.Demo;

/// <summary>The demo's outputs: losses.csv, loss-curves.png, loss-diff.png, summary.md, and the console table.</summary>
internal static class Report
{
    public static int Write(DemoSettings s, CompareShape cfg, string deviceName, ScalarType dtype, int batch, int seq,
                            List<RunResult> results, bool onGpu)
    {
        var inv = CultureInfo.InvariantCulture;
        var naive = results.First(r => r.Variant == "naive");
        var others = results.Where(r => r.Variant != "naive").ToList();
        // fp32: the paths round differently only in the last bits, far below 1e-3. bf16: logits and gradients carry
        // 8 mantissa bits (unit roundoff 2^-8 ≈ 0.4%) and GEMM tilings differ between the full and the chunked
        // products, so per-step losses may drift apart by a few roundoffs over 60 steps: 1% of the loss.
        double Tolerance(double loss) => onGpu || dtype != ScalarType.Float32 ? 1e-2 * Math.Abs(loss) : 1e-3;
        var toleranceText = dtype == ScalarType.Float32 ? "1e-3 absolute (float32)" : "1% of the loss (bfloat16: unit roundoff 2^-8, a few roundoffs of drift over the run)";

        var csv = new StringBuilder("step," + string.Join(",", results.Select(r => $"loss_{r.Variant}")) + "," +
                                    string.Join(",", others.Select(o => $"absdiff_{o.Variant}")) + "\n");
        for (var i = 0; i < naive.Losses.Count; i++)
            csv.Append(inv, $"{i + 1},{string.Join(",", results.Select(r => r.Losses[i].ToString("R", inv)))},{string.Join(",", others.Select(o => Math.Abs(o.Losses[i] - naive.Losses[i]).ToString("E3", inv)))}\n");
        File.WriteAllText(Path.Combine(s.Output, "losses.csv"), csv.ToString());

        var pass = true;
        var table = new Table().AddColumns("run", "final loss", "max |Δ| vs naive", "within tolerance", "time s", "tokens/s", "peak memory");
        var md = new StringBuilder();
        md.AppendLine("# SlothSharp demo: QLoRA Llama, naive loss vs memory-efficient losses").AppendLine();
        md.AppendLine($"- device: {deviceName}; dtype {dtype}; date (UTC) {DateTime.UtcNow:yyyy-MM-dd HH:mm}");
        md.AppendLine($"- model: {cfg.Layers} layers, hidden {cfg.Hidden}, {cfg.Heads} heads / {cfg.KvHeads} KV heads, MLP {cfg.Intermediate}, vocab {cfg.Vocab:N0} (cl100k BPE), NF4 base + LoRA r={cfg.LoraRank}, alpha {cfg.LoraAlpha}");
        md.AppendLine($"- data: {batch} × {seq} tokens per step, {s.Steps} steps, seed {s.Seed}, AdamW lr {s.LearningRate}; one process per run");
        md.AppendLine($"- tolerance per step: {toleranceText}");
        md.AppendLine($"- memory: {results[0].PeakKind}").AppendLine();
        md.AppendLine("| run | final loss | max abs diff vs naive | within tolerance | time (s) | tokens/s | peak memory (GB) |");
        md.AppendLine("|---|---:|---:|---|---:|---:|---:|");
        foreach (var r in results)
        {
            var maxDiff = r.Losses.Zip(naive.Losses, (a, b) => Math.Abs(a - b)).Max();
            var ok = r.Losses.Zip(naive.Losses, (a, b) => Math.Abs(a - b) <= Tolerance(b)).All(x => x);
            if (r != naive) pass &= ok;
            var okText = r == naive ? "(reference)" : ok ? "yes" : "NO";
            table.AddRow(r.Variant, r.Losses[^1].ToString("F5", inv), r == naive ? "-" : maxDiff.ToString("E2", inv), okText,
                r.Seconds.ToString("F1", inv), r.TokensPerSecond.ToString("N0", inv), (r.PeakBytes / 1e9).ToString("F2", inv) + " GB");
            md.AppendLine(inv, $"| {r.Variant} | {r.Losses[^1]:F5} | {(r == naive ? "-" : maxDiff.ToString("E2", inv))} | {okText} | {r.Seconds:F1} | {r.TokensPerSecond:N0} | {r.PeakBytes / 1e9:F2} |");
        }
        md.AppendLine().AppendLine("![loss curves](loss-curves.png)").AppendLine().AppendLine("![differences](loss-diff.png)");
        File.WriteAllText(Path.Combine(s.Output, "summary.md"), md.ToString());
        Plot(s.Output, results, naive, Tolerance);
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(pass
            ? $"[green]loss curves match[/] within {Markup.Escape(toleranceText)} at every step; outputs in [bold]{Markup.Escape(s.Output)}[/]"
            : $"[red]loss curves differ beyond {Markup.Escape(toleranceText)}[/]; outputs in [bold]{Markup.Escape(s.Output)}[/]");
        return pass ? ExitCodes.Ok : ExitCodes.OutOfTolerance;
    }

    private static void Plot(string dir, List<RunResult> results, RunResult naive, Func<double, double> tolerance)
    {
        var font = Path.Combine(AppContext.BaseDirectory, "Assets", "DejaVuSans.ttf");
        if (File.Exists(font)) ScottPlot.Fonts.AddFontFile("DejaVu Sans", font);
        void UseFont(ScottPlot.Plot p)
        {
            if (File.Exists(font)) p.Font.Set("DejaVu Sans");
        }
        var steps = Enumerable.Range(1, naive.Losses.Count).Select(i => (double)i).ToArray();
        var curves = new ScottPlot.Plot();
        foreach (var r in results)
        {
            var sc = curves.Add.Scatter(steps, r.Losses.ToArray());
            sc.LegendText = r.Variant;
            sc.MarkerSize = r.Variant == "naive" ? 0 : 4;
            sc.LineWidth = r.Variant == "naive" ? 3 : 1;
        }
        curves.Title("Training loss: naive vs fused / chunked LM-head loss");
        curves.XLabel("step");
        curves.YLabel("cross-entropy");
        curves.ShowLegend();
        UseFont(curves);
        curves.SavePng(Path.Combine(dir, "loss-curves.png"), 1000, 560);

        var diff = new ScottPlot.Plot();
        foreach (var r in results.Where(r => r != naive))
        {
            var sc = diff.Add.Scatter(steps, r.Losses.Zip(naive.Losses, (a, b) => Math.Abs(a - b)).ToArray());
            sc.LegendText = $"|{r.Variant} − naive|";
        }
        var tol = diff.Add.Scatter(steps, naive.Losses.Select(tolerance).ToArray());
        tol.LegendText = "tolerance";
        tol.LinePattern = ScottPlot.LinePattern.Dashed;
        tol.MarkerSize = 0;
        diff.Title("Per-step loss difference against the naive run");
        diff.XLabel("step");
        diff.YLabel("absolute difference");
        diff.ShowLegend();
        UseFont(diff);
        diff.SavePng(Path.Combine(dir, "loss-diff.png"), 1000, 420);
    }
}
