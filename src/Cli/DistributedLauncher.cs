using System.Diagnostics;
using System.Runtime.InteropServices;

namespace SlothSharp.Cli;

/// <summary>How <see cref="DistributedLauncher.Run"/> supervises its workers.</summary>
/// <param name="StopGrace">after a stop request (Ctrl-C / SIGTERM forwarded as SIGTERM), how long the workers may take
/// to finish their step and write a checkpoint before they are killed</param>
/// <param name="FinishGrace">after one worker exited with 0, how long the others may take to exit too before they are
/// taken for hung and killed (all ranks run the same steps, so they finish within moments of each other)</param>
/// <param name="InheritRank0Output">rank 0 writes to this process's own stdout/stderr (a terminal keeps its live
/// progress bar) instead of through <c>output</c></param>
public sealed record LauncherOptions(TimeSpan StopGrace, TimeSpan FinishGrace, bool InheritRank0Output = false)
{
    public static LauncherOptions Default { get; } = new(TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(5));
}

/// <summary>
/// Starts one worker process per GPU and supervises them: worker r gets <see cref="DistributedEnvironment"/>'s
/// variables (rank r, device r, the shared NCCL id), its output lines go to <c>output</c> (rank 0's as they are, the
/// others' prefixed "[rank r] "). When a worker fails the others are killed (with their child processes) so a job
/// never hangs in a collective waiting for a dead peer; a stop request is forwarded to every worker as SIGTERM (they
/// finish the step, rank 0 writes a checkpoint) and workers still running after the grace period are killed. Rank 0
/// writes every file, always into a staging directory renamed when complete, so a killed job leaves nothing
/// half-written. The engine of <c>sloth finetune --gpus N</c>.
/// </summary>
public static class DistributedLauncher
{
    /// <summary>The exit code of a job stopped by a signal.</summary>
    public const int Interrupted = 130;

    /// <summary>Runs <paramref name="workers"/> copies of <paramref name="executable"/> <paramref name="arguments"/>
    /// and returns 0 when all exit with 0; otherwise the exit code of the first worker that failed, after the others
    /// were stopped (1 for a hung worker, 130 after a stop request unless rank 0 exited otherwise).
    /// <paramref name="report"/> receives the launcher's own messages (which worker failed, with its exit code).</summary>
    public static int Run(string executable, IReadOnlyList<string> arguments, int workers, byte[] ncclId,
                          TextWriter output, TextWriter report, CancellationToken cancel = default, LauncherOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(executable);
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(ncclId);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(report);
        if (workers < 1) throw new ArgumentOutOfRangeException(nameof(workers), workers, "must be >= 1");
        options ??= LauncherOptions.Default;
        var procs = new List<Process>();
        var outputLock = new object();
        var failed = new TaskCompletionSource<(int Rank, int Code)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var succeeded = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            for (var rank = 0; rank < workers; rank++)
            {
                var redirect = rank != 0 || !options.InheritRank0Output;
                var psi = new ProcessStartInfo(executable)
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = redirect,
                    RedirectStandardError = redirect,
                };
                foreach (var a in arguments) psi.ArgumentList.Add(a);
                foreach (var (k, v) in DistributedEnvironment.For(rank, workers, rank, ncclId)) psi.Environment[k] = v;
                var prefix = rank == 0 ? "" : $"[rank {rank}] ";
                var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
                if (redirect)
                {
                    DataReceivedEventHandler forward = (_, e) =>
                    {
                        if (e.Data is null) return;
                        lock (outputLock) output.WriteLine(prefix + e.Data);
                    };
                    p.OutputDataReceived += forward;
                    p.ErrorDataReceived += forward;
                }
                var r = rank;
                p.Exited += (_, _) =>
                {
                    int code;
                    try
                    {
                        code = p.ExitCode;
                    }
                    catch (InvalidOperationException)
                    {
                        return;
                    }
                    if (code != 0) failed.TrySetResult((r, code));
                    else succeeded.TrySetResult(r);
                };
                if (!p.Start()) throw new InvalidOperationException($"could not start worker {rank}: {executable}");
                procs.Add(p);
                if (redirect)
                {
                    p.BeginOutputReadLine();
                    p.BeginErrorReadLine();
                }
            }
            var all = Task.WhenAll(procs.Select(p => p.WaitForExitAsync(CancellationToken.None)));
            var cancelled = Task.Delay(Timeout.Infinite, cancel);
            var first = Task.WhenAny(all, failed.Task, cancelled, succeeded.Task).GetAwaiter().GetResult();
            if (first == succeeded.Task)
            {
                // One worker is done: the others must follow soon (or fail, or be cancelled).
                var grace = Task.Delay(options.FinishGrace, CancellationToken.None);
                first = Task.WhenAny(all, failed.Task, cancelled, grace).GetAwaiter().GetResult();
                if (first == grace)
                {
                    var hung = procs.Select((p, i) => (p, i)).Where(x => !x.p.HasExited).Select(x => x.i).ToList();
                    report.WriteLine($"worker rank {string.Join(", ", hung)} still running {options.FinishGrace.TotalSeconds:0} s after rank " +
                                     $"{succeeded.Task.Result} finished; taken for hung and stopped");
                    StopAll(procs);
                    return 1;
                }
            }
            if (first == all) return Finished(procs, report);
            if (first == cancelled)
            {
                report.WriteLine($"stop requested: forwarding SIGTERM to the workers (they finish the step; killed after {options.StopGrace.TotalSeconds:0} s)");
                foreach (var p in procs) Terminate(p);
                var allOrTimeout = Task.WhenAny(all, Task.Delay(options.StopGrace, CancellationToken.None)).GetAwaiter().GetResult();
                if (allOrTimeout != all)
                {
                    report.WriteLine("workers still running after the grace period: killing them");
                    StopAll(procs);
                    return Interrupted;
                }
                foreach (var p in procs) p.WaitForExit();
                var code0 = procs[0].ExitCode;
                return code0 is 0 or Interrupted ? Interrupted : code0;
            }
            var (rankFailed, exit) = failed.Task.Result;
            report.WriteLine($"worker rank {rankFailed} exited with code {exit}; stopping the other workers");
            StopAll(procs);
            return exit;
        }
        catch
        {
            StopAll(procs);
            throw;
        }
        finally
        {
            foreach (var p in procs) p.Dispose();
        }
    }

    /// <summary>Every worker has exited; one may have failed a moment before the others finished.</summary>
    private static int Finished(List<Process> procs, TextWriter report)
    {
        foreach (var p in procs) p.WaitForExit();  // flushes the redirected output
        var bad = procs.Select((p, r) => (r, p.ExitCode)).FirstOrDefault(x => x.ExitCode != 0);
        if (bad.ExitCode == 0) return 0;
        report.WriteLine($"worker rank {bad.r} exited with code {bad.ExitCode}");
        return bad.ExitCode;
    }

    private const int SigTerm = 15;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SysKill(int pid, int signal);

    /// <summary>SIGTERM to one worker (Windows has no SIGTERM: killed instead).</summary>
    private static void Terminate(Process p)
    {
        try
        {
            if (p.HasExited) return;
            if (OperatingSystem.IsWindows()) p.Kill(entireProcessTree: true);
            else SysKill(p.Id, SigTerm);
        }
        catch (InvalidOperationException)
        {
            // exited meanwhile
        }
    }

    private static void StopAll(List<Process> procs)
    {
        foreach (var p in procs)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // exited meanwhile
            }
        }
        foreach (var p in procs)
        {
            try
            {
                p.WaitForExit();
            }
            catch (InvalidOperationException)
            {
                // never started
            }
        }
    }
}
