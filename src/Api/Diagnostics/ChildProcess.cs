using System.Diagnostics;

namespace SlothSharp.Diagnostics;

/// <summary>How <see cref="ChildProcess"/> starts a process.</summary>
public sealed record ChildProcessOptions
{
    /// <summary>true: collect stdout and stderr into <see cref="ChildProcessResult.Output"/>; false: the child writes
    /// to this process's console.</summary>
    public bool CaptureOutput { get; init; }

    /// <summary>Environment variables set (or overridden) in the child.</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }
}

/// <summary>The exit code and, when captured, stdout followed by stderr.</summary>
public sealed record ChildProcessResult(int ExitCode, string Output);

/// <summary>
/// Runs a program, typically this one again, and waits for it. Used where one process per measurement is needed:
/// TorchSharp cannot empty the CUDA caching allocator, so memory and speed comparisons run each variant in a fresh
/// process (the benchmarks, `sloth demo`).
/// </summary>
public static class ChildProcess
{
    /// <summary>The arguments this process was started with, without the program (and without the app's .dll when
    /// started as <c>dotnet app.dll</c>): "the same command" for <see cref="RunSelf"/>.</summary>
    public static IReadOnlyList<string> OwnArguments => System.Environment.GetCommandLineArgs().Skip(1).ToArray();

    /// <summary>Starts this program again with <paramref name="arguments"/> and waits: the same executable, or
    /// <c>dotnet app.dll</c> when this process runs that way.</summary>
    public static ChildProcessResult RunSelf(IEnumerable<string> arguments, ChildProcessOptions? options = null)
    {
        var (exe, prefix) = SelfCommand();
        return Run(exe, prefix.Concat(arguments), options);
    }

    /// <summary>Starts <paramref name="executable"/> with <paramref name="arguments"/> (passed as a list: no shell
    /// quoting) and waits for it.</summary>
    public static ChildProcessResult Run(string executable, IEnumerable<string> arguments, ChildProcessOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(executable);
        ArgumentNullException.ThrowIfNull(arguments);
        options ??= new ChildProcessOptions();
        var psi = new ProcessStartInfo(executable)
        {
            UseShellExecute = false,
            RedirectStandardOutput = options.CaptureOutput,
            RedirectStandardError = options.CaptureOutput,
        };
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        if (options.Environment is { } env)
            foreach (var (k, v) in env) psi.Environment[k] = v;
        using var proc = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {executable}");
        if (!options.CaptureOutput)
        {
            proc.WaitForExit();
            return new ChildProcessResult(proc.ExitCode, "");
        }
        // Read stderr concurrently: a child that fills one pipe while we block on the other would never finish.
        var stderr = proc.StandardError.ReadToEndAsync();
        var stdout = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        return new ChildProcessResult(proc.ExitCode, stdout + stderr.Result);
    }

    /// <summary>(executable, leading arguments) that start this program again.</summary>
    internal static (string Executable, string[] Prefix) SelfCommand()
    {
        var exe = System.Environment.ProcessPath ?? throw new InvalidOperationException("this process has no executable path");
        // `dotnet app.dll ...`: the host is dotnet and the app is argv[0] of the managed command line.
        return Path.GetFileNameWithoutExtension(exe) == "dotnet"
            ? (exe, [System.Environment.GetCommandLineArgs()[0]])
            : (exe, []);
    }
}
