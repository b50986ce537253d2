using NUnit.Framework;
using SlothSharp.Diagnostics;

namespace SlothSharp.Tests;

/// <summary>The helper the benchmarks and `sloth demo` use to run one measurement per process.</summary>
public class ChildProcessTests
{
    [Test]
    public void RunCapturesBothStreamsTheExitCodeAndTheEnvironment()
    {
        Assume.That(File.Exists("/bin/sh"), "needs /bin/sh");
        var r = ChildProcess.Run("/bin/sh", ["-c", "echo out; echo err >&2; echo \"$SLOTH_CHILD_TEST\"; exit 3"],
            new ChildProcessOptions { CaptureOutput = true, Environment = new Dictionary<string, string> { ["SLOTH_CHILD_TEST"] = "a b" } });
        Assert.That(r.ExitCode, Is.EqualTo(3));
        Assert.That(r.Output, Does.Contain("out\n").And.Contain("err\n").And.Contain("a b\n"));
    }

    [Test]
    public void ArgumentsArePassedWithoutAShell()
    {
        Assume.That(File.Exists("/bin/sh"), "needs /bin/sh");
        var r = ChildProcess.Run("/bin/sh", ["-c", "printf '%s|' \"$@\"", "sh", "two words", "$HOME", "'q'"], new ChildProcessOptions { CaptureOutput = true });
        Assert.That(r.Output, Is.EqualTo("two words|$HOME|'q'|"));
    }

    [Test]
    public void SelfCommandStartsThisProgram()
    {
        var (exe, prefix) = ChildProcess.SelfCommand();
        Assert.That(exe, Is.EqualTo(Environment.ProcessPath));
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet")
        {
            Assert.That(prefix, Has.Length.EqualTo(1));
            Assert.That(prefix[0], Does.EndWith(".dll"));
            Assert.That(File.Exists(prefix[0]), prefix[0]);
        }
        else Assert.That(prefix, Is.Empty);
    }

    [Test]
    public void AMissingProgramIsAnError() =>
        Assert.Catch<Exception>(() => ChildProcess.Run("/nonexistent/sloth-child", []));
}
