using NUnit.Framework;
using SlothSharp.Cli;

namespace SlothSharp.Tests;

/// <summary>The worker launcher with shell scripts as workers: each gets its rank's variables, output is labelled by
/// rank, and one failing worker stops the others instead of leaving them waiting.</summary>
public class DistributedLauncherTests
{
    private static readonly byte[] Id = Enumerable.Range(0, Interop.SlothConstants.NcclUniqueIdBytes).Select(i => (byte)i).ToArray();

    [Test]
    public void EveryWorkerGetsItsRankDeviceAndTheSharedId()
    {
        var output = new StringWriter();
        var report = new StringWriter();
        var code = DistributedLauncher.Run("/bin/sh",
            ["-c", "echo \"r=$SLOTHSHARP_RANK n=$SLOTHSHARP_WORLD_SIZE d=$SLOTHSHARP_DEVICE id=$SLOTHSHARP_NCCL_ID\""],
            3, Id, output, report);
        Assert.That(code, Is.EqualTo(0), report.ToString());
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var hex = Convert.ToHexString(Id);
        Assert.That(lines, Does.Contain($"r=0 n=3 d=0 id={hex}"));
        Assert.That(lines, Does.Contain($"[rank 1] r=1 n=3 d=1 id={hex}"));
        Assert.That(lines, Does.Contain($"[rank 2] r=2 n=3 d=2 id={hex}"));
    }

    [Test]
    public void AFailingWorkerStopsTheOthers()
    {
        var output = new StringWriter();
        var report = new StringWriter();
        // Rank 1 fails at once; the others would sleep for a minute if nobody stopped them.
        var code = DistributedLauncher.Run("/bin/sh",
            ["-c", "if [ \"$SLOTHSHARP_RANK\" = 1 ]; then echo broken >&2; exit 3; fi; exec sleep 60"],
            3, Id, output, report);
        Assert.That(code, Is.EqualTo(3));
        Assert.That(report.ToString(), Does.Contain("worker rank 1 exited with code 3; stopping the other workers"));
        Assert.That(output.ToString(), Does.Contain("[rank 1] broken"));
    }

    private static readonly LauncherOptions Quick = new(StopGrace: TimeSpan.FromSeconds(20), FinishGrace: TimeSpan.FromSeconds(2));

    [Test]
    public void AllWorkersSucceeding()
    {
        var output = new StringWriter();
        var report = new StringWriter();
        var code = DistributedLauncher.Run("/bin/sh", ["-c", "echo done $SLOTHSHARP_RANK"], 4, Id, output, report, options: Quick);
        Assert.That(code, Is.EqualTo(0), report.ToString());
        Assert.That(report.ToString(), Is.Empty);
        Assert.That(output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EquivalentTo(new[] { "done 0", "[rank 1] done 1", "[rank 2] done 2", "[rank 3] done 3" }));
    }

    [Test]
    public void AWorkerThatHangsAfterTheOthersFinishedIsStopped()
    {
        var output = new StringWriter();
        var report = new StringWriter();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var code = DistributedLauncher.Run("/bin/sh",
            ["-c", "if [ \"$SLOTHSHARP_RANK\" = 2 ]; then exec sleep 60; fi; exit 0"], 3, Id, output, report, options: Quick);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(report.ToString(), Does.Contain("2 still running 2 s after rank"));
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(50)), "the hung worker was killed, not waited for");
    }

    [Test]
    public void AStopRequestIsForwardedAsSigtermAndTheWorkersFinishCleanly()
    {
        var output = new StringWriter();
        var report = new StringWriter();
        using var cts = new CancellationTokenSource();
        // Each worker says it is ready, then waits; on SIGTERM it "writes its checkpoint" and exits with 130 as sloth does.
        // It waits in one-second foreground sleeps: the shell runs the trap when the current one ends. (A background
        // `sleep 60 &` killed from the trap raced: a SIGTERM reaching dash's forked child before its exec is caught by the
        // inherited trap and lost, so the sleep lived on holding the output pipe, about one run in ten here.)
        var script = "trap 'echo \"term $SLOTHSHARP_RANK\"; exit 130' TERM; echo ready; while :; do sleep 1; done";
        var lines = 0;
        var writer = new CallbackWriter(line =>
        {
            lock (output) output.WriteLine(line);
            if (line.EndsWith("ready", StringComparison.Ordinal) && Interlocked.Increment(ref lines) == 3) cts.Cancel();
        });
        var code = DistributedLauncher.Run("/bin/sh", ["-c", script], 3, Id, writer, report, cts.Token, Quick);
        Assert.That(code, Is.EqualTo(DistributedLauncher.Interrupted), report.ToString());
        Assert.That(report.ToString(), Does.Contain("forwarding SIGTERM"));
        Assert.That(report.ToString(), Does.Not.Contain("killing"));
        var text = output.ToString();
        Assert.That(text, Does.Contain("term 0").And.Contain("[rank 1] term 1").And.Contain("[rank 2] term 2"));
    }

    [Test]
    public void WorkersIgnoringTheStopAreKilledAfterTheGrace()
    {
        var report = new StringWriter();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        var code = DistributedLauncher.Run("/bin/sh", ["-c", "trap '' TERM; exec sleep 60"], 2, Id, TextWriter.Null, report, cts.Token,
                                           Quick with { StopGrace = TimeSpan.FromSeconds(1) });
        Assert.That(code, Is.EqualTo(DistributedLauncher.Interrupted));
        Assert.That(report.ToString(), Does.Contain("killing them"));
    }

    private sealed class CallbackWriter(Action<string> onLine) : TextWriter
    {
        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;
        public override void WriteLine(string? value) => onLine(value ?? "");
    }

    [Test]
    public void TheEnvironmentRoundTripsAndBadValuesNameTheVariable()
    {
        Assert.That(DistributedEnvironment.Read(_ => null), Is.Null);
        var vars = DistributedEnvironment.For(1, 2, 1, Id);
        var env = DistributedEnvironment.Read(k => vars.GetValueOrDefault(k));
        Assert.That((env!.Rank, env.WorldSize, env.Device), Is.EqualTo((1, 2, 1)));
        Assert.That(env.NcclId, Is.EqualTo(Id));

        string Error(string key, string? value)
        {
            var edited = new Dictionary<string, string?>(vars.ToDictionary(kv => kv.Key, kv => (string?)kv.Value)) { [key] = value };
            return Assert.Throws<ArgumentException>(() => DistributedEnvironment.Read(k => edited.GetValueOrDefault(k)))!.Message;
        }
        Assert.That(Error(DistributedEnvironment.WorldSizeVariable, null), Does.Contain("SLOTHSHARP_WORLD_SIZE is not set"));
        Assert.That(Error(DistributedEnvironment.RankVariable, "2"), Does.Contain("SLOTHSHARP_RANK = 2 must be below SLOTHSHARP_WORLD_SIZE = 2"));
        Assert.That(Error(DistributedEnvironment.DeviceVariable, "-1"), Does.Contain("SLOTHSHARP_DEVICE = '-1'"));
        Assert.That(Error(DistributedEnvironment.NcclIdVariable, "xyz"), Does.Contain("must be hexadecimal"));
        Assert.That(Error(DistributedEnvironment.NcclIdVariable, "ABCD"), Does.Contain("holds 2 bytes"));
    }
}
