namespace SlothSharp.Cli;

/// <summary>An expected failure of a CLI command (bad input, missing file, out-of-range value). The CLI prints
/// <c>error: &lt;subject&gt;: &lt;message&gt;</c> on stderr and exits with <see cref="ExitCodes.BadInput"/>.</summary>
/// <param name="subject">What is wrong: the file (its path) or the option (e.g. <c>--data</c>).</param>
/// <param name="message">What is wrong with it, lower-case, no trailing period (e.g. "no tokenizer.json in the model folder").</param>
public sealed class CliException(string subject, string message) : Exception(message)
{
    public string Subject { get; } = subject;
}

/// <summary>The exit codes of <c>sloth</c>.</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;
    /// <summary>An unexpected failure (a bug, a CUDA error, an environment problem such as an old libstdc++).</summary>
    public const int Failure = 1;
    /// <summary>Bad input: a missing or malformed file, a bad option value, a usage error.</summary>
    public const int BadInput = 2;
    /// <summary><c>sloth demo</c>: the memory-efficient loss diverged from the naive one beyond the tolerance.</summary>
    public const int OutOfTolerance = 3;
}
