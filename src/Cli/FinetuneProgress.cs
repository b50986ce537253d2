using System.Globalization;
using System.Runtime.InteropServices;
using SlothSharp.Training;
using Spectre.Console;

namespace SlothSharp.Cli;

/// <summary>Runs <see cref="Trainer.Train"/> with a live progress bar on stderr (step, loss, lr, tokens/s, ETA, GPU
/// memory) and turns Ctrl-C / SIGTERM into "finish this step, write a checkpoint, stop".</summary>
internal static class FinetuneProgress
{
    /// <summary>A console that draws on stderr, so stdout keeps only results.</summary>
    public static IAnsiConsole Stderr { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <param name="showProgress">false: no progress output at all (a distributed job's ranks other than 0); Ctrl-C /
    /// SIGTERM still stop after the step.</param>
    /// <param name="evaluateAfter">called after each step with the step number; returns the held-out loss when it
    /// evaluated at that step (shown in the progress line until the next evaluation), else null.</param>
    public static TrainResult Run(Trainer trainer, string label, bool showProgress = true, Func<int, double?>? evaluateAfter = null)
    {
        using var cts = new CancellationTokenSource();
        void Stop()
        {
            if (!cts.IsCancellationRequested && showProgress) Stderr.MarkupLine("[yellow]stopping after this step; writing a checkpoint…[/]");
            cts.Cancel();
        }
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;  // keep the process alive: the loop stops at the end of the step
            Stop();
        };
        Console.CancelKeyPress += onCancel;
        using var term = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx =>
        {
            ctx.Cancel = true;
            Stop();
        });
        try
        {
            if (!showProgress)
                return trainer.Train(evaluateAfter is null ? null : new SyncProgress<TrainProgress>(p => evaluateAfter(p.Step)), cts.Token);
            double? lastEval = null;
            TrainResult? result = null;
            var inv = CultureInfo.InvariantCulture;
            Stderr.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask($"{label} step {trainer.Step}/{trainer.TotalSteps}", maxValue: trainer.TotalSteps);
                    task.Value = trainer.Step;
                    result = trainer.Train(new SyncProgress<TrainProgress>(p =>
                    {
                        if (evaluateAfter?.Invoke(p.Step) is { } e) lastEval = e;
                        var eval = lastEval is { } l ? string.Create(inv, $"  eval {l:F4}") : "";
                        var mem = p.GpuMemoryUsedBytes is { } used ? $"  gpu {used / 1e9:F1}/{p.GpuMemoryTotalBytes / 1e9:F0} GB" : "";
                        task.Description = Markup.Escape(string.Create(inv,
                            $"{label} step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}{eval}  lr {p.LearningRate:E2}  {p.TokensPerSecond:N0} tok/s  ETA {Eta(p.Eta)}{mem}"));
                        task.Value = p.Step;
                    }), cts.Token);
                });
            return result!;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static string Eta(TimeSpan t) => t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : $"{t.Minutes}m{t.Seconds:D2}s";

    /// <summary>Reports on the caller's thread (System.Progress posts to the thread pool, out of order).</summary>
    internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
