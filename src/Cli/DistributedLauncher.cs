using System.Diagnostics;

namespace SlothSharp.Cli;

/// <summary>
/// Starts one worker process per GPU and supervises them: worker r gets <see cref="DistributedEnvironment"/>'s
/// variables (rank r, device r, the shared NCCL id), its output lines go to <paramref name="output"/> (rank 0's as
/// they are, the others' prefixed "[rank r] "), and when a worker fails the others are killed (with their child
/// processes) so a job never hangs in a collective waiting for a dead peer. The building block of
/// <c>sloth finetune --gpus N</c> (not wired yet): each worker owns a GPU, rank 0 owns logs and outputs.
/// </summary>
public static class DistributedLauncher
{
    /// <summary>Runs <paramref name="workers"/> copies of <paramref name="executable"/> <paramref name="arguments"/>
    /// and returns 0 when all exit with 0; otherwise the exit code of the first worker that failed, after the others
    /// were stopped. <paramref name="report"/> receives the launcher's own messages (which worker failed).</summary>
    public static int Run(string executable, IReadOnlyList<string> arguments, int workers, byte[] ncclId,
                          TextWriter output, TextWriter report, CancellationToken cancel = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(executable);
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(ncclId);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(report);
        if (workers < 1) throw new ArgumentOutOfRangeException(nameof(workers), workers, "must be >= 1");
        var procs = new List<Process>();
        var outputLock = new object();
        var failed = new TaskCompletionSource<(int Rank, int Code)>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            for (var rank = 0; rank < workers; rank++)
            {
                var psi = new ProcessStartInfo(executable)
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                };
                foreach (var a in arguments) psi.ArgumentList.Add(a);
                foreach (var (k, v) in DistributedEnvironment.For(rank, workers, rank, ncclId)) psi.Environment[k] = v;
                var prefix = rank == 0 ? "" : $"[rank {rank}] ";
                var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
                DataReceivedEventHandler forward = (_, e) =>
                {
                    if (e.Data is null) return;
                    lock (outputLock) output.WriteLine(prefix + e.Data);
                };
                p.OutputDataReceived += forward;
                p.ErrorDataReceived += forward;
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
                };
                if (!p.Start()) throw new InvalidOperationException($"could not start worker {rank}: {executable}");
                procs.Add(p);
                p.BeginOutputReadLine();
                p.BeginErrorReadLine();
            }
            var all = Task.WhenAll(procs.Select(p => p.WaitForExitAsync(CancellationToken.None)));
            var cancelled = Task.Delay(Timeout.Infinite, cancel);
            var first = Task.WhenAny(all, failed.Task, cancelled).GetAwaiter().GetResult();
            if (first == all)
            {
                // Every worker has exited; one may have failed a moment before the others finished.
                foreach (var p in procs) p.WaitForExit();  // flushes the redirected output
                var bad = procs.Select((p, r) => (r, p.ExitCode)).FirstOrDefault(x => x.ExitCode != 0);
                if (bad.ExitCode == 0) return 0;
                report.WriteLine($"worker rank {bad.r} exited with code {bad.ExitCode}");
                return bad.ExitCode;
            }
            if (first == cancelled)
            {
                report.WriteLine("cancelled: stopping the workers");
                StopAll(procs);
                return 130;
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
