using NUnit.Framework;
using SlothSharp.Cli;

namespace SlothSharp.Tests;

/// <summary>The start-up check for TorchSharp's libstdc++ requirement (GLIBCXX_3.4.32), on fake files.</summary>
public class TorchSharpPreflightTests() : TempDirFixture("preflight")
{
    private string FakeLibrary(string name, params string[] versions)
    {
        var path = Path.Combine(Dir, name);
        using var f = File.Create(path);
        f.Write("\x7fELF garbage\0"u8);
        foreach (var v in versions) f.Write(System.Text.Encoding.ASCII.GetBytes(v + "\0"));
        return path;
    }

    [Test]
    public void FindsTheSymbolVersionExactly()
    {
        var gcc12 = FakeLibrary("libstdc++.so.6.0.30", "GLIBCXX_3.4.29", "GLIBCXX_3.4.30", "GLIBCXX_3.4.320-not-a-version");
        var gcc13 = FakeLibrary("libstdc++.so.6.0.32", "GLIBCXX_3.4.30", "GLIBCXX_3.4.31", "GLIBCXX_3.4.32");
        Assert.That(TorchSharpPreflight.HasSymbolVersion(gcc12, TorchSharpPreflight.RequiredVersion), Is.False);
        Assert.That(TorchSharpPreflight.HasSymbolVersion(gcc13, TorchSharpPreflight.RequiredVersion), Is.True);
    }

    [Test]
    public void FindsLibStdCxxInProcMaps()
    {
        const string maps = """
            55d0c0000000-55d0c0010000 r--p 00000000 fe:01 123 /usr/share/dotnet/dotnet
            7f0000000000-7f0000100000 r-xp 00000000 fe:01 456 /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30
            7f0000200000-7f0000300000 rw-p 00000000 00:00 0 [heap]
            """;
        Assert.That(TorchSharpPreflight.LibStdCxxInMaps(maps), Is.EqualTo("/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"));
        Assert.That(TorchSharpPreflight.LibStdCxxInMaps("7f00-7f01 r-xp 0 fe:01 1 /lib/libc.so.6\n"), Is.Null);
    }

    [Test]
    public void MessageSaysWhatIsMissingAndWhatToDo()
    {
        var line = TorchSharpPreflight.Message("/usr/lib/libstdc++.so.6");
        Assert.That(line, Does.StartWith("error: /usr/lib/libstdc++.so.6: "));
        Assert.That(line, Does.Contain("GLIBCXX_3.4.32").And.Contain("./build.sh sloth").And.Contain("GCC ≥ 13"));
        Assert.That(line, Does.Not.Contain("\n"));
    }

    /// <summary>This test process loaded TorchSharp, so its libstdc++ has the version and the check passes.</summary>
    [Test]
    public void PassesInThisProcess()
    {
        using var t = TorchSharp.torch.zeros(1);
        Assert.That(TorchSharpPreflight.Check(), Is.Null);
    }
}
