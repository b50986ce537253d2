using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using Spectre.Console;

namespace SlothSharp.Cli;

/// <summary>The CLI's entry point, testable in process: parses, runs the command, and turns every failure into one
/// line on stderr and an exit code (<see cref="ExitCodes"/>). Commands throw; they never print errors themselves.</summary>
public static class SlothCli
{
    /// <summary>Global <c>--verbose</c>: on an error, print the full exception after the one-line message.</summary>
    public static Option<bool> CreateVerboseOption() =>
        new("--verbose") { Description = "on an error, also print the full exception trace", Recursive = true };

    /// <summary>Runs <c>sloth ARGS</c>: command output to <paramref name="stdout"/>, errors to <paramref name="stderr"/>.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = Program.CreateRoot();
        var verboseOption = CreateVerboseOption();
        root.Options.Add(verboseOption);
        var result = root.Parse(args);
        var verbose = args.Contains("--verbose");
        if (result.Errors.Count > 0 && result.Action is not HelpAction)
        {
            stderr.WriteLine(CliErrors.FormatParseError(result));
            return ExitCodes.BadInput;
        }
        var runsCommand = result.Action is not (HelpAction or ParseErrorAction) && result.CommandResult.Command != root;
        if (runsCommand && TorchSharpPreflight.Check() is { } startupError)
        {
            stderr.WriteLine(startupError);
            return ExitCodes.Failure;
        }

        var previousConsole = AnsiConsole.Console;
        var redirect = !ReferenceEquals(stdout, Console.Out);
        if (redirect)
            AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
                { Out = new AnsiConsoleOutput(stdout), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No });
        try
        {
            return result.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception thrown)
        {
            var e = CliErrors.Unwrap(thrown);
            if (!CliErrors.IsBadInput(e) && TorchSharpPreflight.Explain(e) is { } libError)
            {
                stderr.WriteLine(libError);
                if (verbose) stderr.WriteLine(thrown);
                return ExitCodes.Failure;
            }
            var badInput = CliErrors.IsBadInput(e);
            stderr.WriteLine(CliErrors.Format(e, FallbackSubject(result), badInput));
            if (verbose) stderr.WriteLine(thrown);
            return badInput ? ExitCodes.BadInput : ExitCodes.Failure;
        }
        finally
        {
            if (redirect) AnsiConsole.Console = previousConsole;
        }
    }

    /// <summary>What an error that names nothing is about: the command's first argument (its input), else the command.</summary>
    private static string FallbackSubject(ParseResult result)
    {
        var first = result.CommandResult.Children.OfType<System.CommandLine.Parsing.ArgumentResult>()
            .SelectMany(a => a.Tokens).FirstOrDefault();
        return first?.Value ?? CliErrors.CommandPath(result.CommandResult);
    }
}
