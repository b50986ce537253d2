using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.Json;
using System.Text.RegularExpressions;
using SlothSharp.Interop;

namespace SlothSharp.Cli;

/// <summary>Turns a failure into the CLI's one line <c>error: &lt;file or option&gt;: &lt;what is wrong&gt;</c> and its
/// exit code: <see cref="ExitCodes.BadInput"/> for bad input (the exception types below and usage errors),
/// <see cref="ExitCodes.Failure"/> for anything else.</summary>
internal static partial class CliErrors
{
    public const string VerboseHint = "run with --verbose for details";

    /// <summary>Whether an exception means the user's input is wrong (exit 2) rather than a failure of SlothSharp.</summary>
    public static bool IsBadInput(Exception e) => e switch
    {
        CliException or ArgumentException or InvalidDataException or KeyNotFoundException or JsonException => true,
        IOException or UnauthorizedAccessException => true,  // FileNotFound, DirectoryNotFound, EndOfStream, ...
        SlothException s => s.Status is SlothStatus.ErrorInvalidArgument or SlothStatus.ErrorUnsupported
                                     or SlothStatus.ErrorNoCuda,
        _ => false,
    };

    /// <summary>The exception that says what went wrong: wrappers (reflection, type initializers, a single-exception
    /// aggregate) are looked through.</summary>
    public static Exception Unwrap(Exception e)
    {
        while (true)
        {
            switch (e)
            {
                case System.Reflection.TargetInvocationException { InnerException: { } inner }: e = inner; continue;
                case TypeInitializationException { InnerException: { } inner }: e = inner; continue;
                case AggregateException a when a.InnerExceptions.Count == 1: e = a.InnerExceptions[0]; continue;
                default: return e;
            }
        }
    }

    /// <summary>(subject, message) of an exception; <paramref name="fallbackSubject"/> names the command's input when
    /// the exception names nothing itself.</summary>
    public static (string Subject, string Message) Describe(Exception e, string fallbackSubject)
    {
        switch (e)
        {
            case CliException c:
                return (c.Subject, Clean(c.Message));
            case FileNotFoundException f when f.FileName is { Length: > 0 } name:
                return (name, "file not found");
            case DirectoryNotFoundException d when QuotedPath(d.Message) is { } path:
                return (path, "a folder on this path does not exist");
            case UnauthorizedAccessException u when QuotedPath(u.Message) is { } path:
                return (path, "permission denied");
            case SlothException s when SplitSubject(s.NativeMessage, anyIdentifier: true) is (var subject, var rest):
                return (subject, Clean(rest));
            case SlothException s:
                return (fallbackSubject, Clean(s.NativeMessage));
        }
        var message = e is ArgumentException a && a.ParamName is { } p
            ? a.Message.Replace($" (Parameter '{p}')", "", StringComparison.Ordinal)
            : e.Message;
        return SplitSubject(message, anyIdentifier: false) is (var sub, var text) ? (sub, Clean(text)) : (fallbackSubject, Clean(message));
    }

    /// <summary>The one line for a failure that escaped a command.</summary>
    public static string Format(Exception e, string fallbackSubject, bool badInput)
    {
        var (subject, message) = Describe(e, fallbackSubject);
        return badInput
            ? $"error: {subject}: {message}"
            : $"error: {subject}: {message} ({e.GetType().Name}; {VerboseHint})";
    }

    /// <summary>The one line for the first parse error (unknown option, bad value, missing argument).</summary>
    public static string FormatParseError(ParseResult result)
    {
        // An unknown token first: it usually explains the errors after it.
        if (result.UnmatchedTokens.Count > 0)
        {
            var token = result.UnmatchedTokens[0];
            return $"error: {token}: unknown {(token.StartsWith('-') ? "option" : "command or argument")} for {CliErrors.CommandPath(result.CommandResult)}";
        }
        var error = result.Errors[0];
        var message = error.Message;
        if (SplitSubject(message, anyIdentifier: false) is (var s, var rest)) return $"error: {s}: {Clean(rest)}";
        if (UnrecognizedToken().Match(message) is { Success: true } u)
            return $"error: {u.Groups[1].Value}: unknown {(u.Groups[1].Value.StartsWith('-') ? "option" : "command or argument")}";
        if (MissingArgument().Match(message) is { Success: true } ma)
            return $"error: {SubjectOf(error.SymbolResult, result)}: missing argument <{ma.Groups[1].Value}>";
        if (CannotParse().Match(message) is { Success: true } c)
            return $"error: {SubjectOf(error.SymbolResult, result)}: cannot parse '{c.Groups[1].Value}' as {FriendlyType(c.Groups[2].Value)}";
        return $"error: {SubjectOf(error.SymbolResult, result)}: {Clean(message)}";
    }

    private static string SubjectOf(SymbolResult? symbol, ParseResult result) => symbol switch
    {
        OptionResult o => o.Option.Name,
        ArgumentResult { Parent: OptionResult o } => o.Option.Name,
        ArgumentResult { Parent: CommandResult c } => CommandPath(c),
        ArgumentResult a => $"<{a.Argument.Name}>",
        CommandResult c => CommandPath(c),
        _ => CommandPath(result.CommandResult),
    };

    /// <summary>"sloth dequant": the command as typed, for errors that concern the command line as a whole.</summary>
    public static string CommandPath(CommandResult c)
    {
        var names = new List<string>();
        for (SymbolResult? r = c; r != null; r = r.Parent)
            if (r is CommandResult cr) names.Add(cr.Parent == null ? "sloth" : cr.Command.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    /// <summary>The subject a message starts with ("/path/file.json: ...", "--data: ...", "config.json: ..."), or null.
    /// With <paramref name="anyIdentifier"/> a bare identifier also counts (native messages start with the function).</summary>
    public static (string Subject, string Remainder)? SplitSubject(string message, bool anyIdentifier)
    {
        var i = message.IndexOf(": ", StringComparison.Ordinal);
        if (i <= 0) return null;
        var head = message[..i];
        var rest = message[(i + 2)..];
        if (rest.Length == 0) return null;
        return LooksLikeSubject(head) || (anyIdentifier && Identifier().IsMatch(head)) ? (head, rest) : null;
    }

    private static bool LooksLikeSubject(string s) =>
        (s.StartsWith('-') && !s.Contains(' '))                                          // an option
        || s.StartsWith('/') || s.StartsWith("./", StringComparison.Ordinal) || s.StartsWith("../", StringComparison.Ordinal)
        || s.StartsWith("~/", StringComparison.Ordinal) || WindowsPath().IsMatch(s)    // an absolute or relative path
        || (!s.Contains(' ') && (s.Contains('/') || s.Contains('\\') || FileName().IsMatch(s)));

    /// <summary>One line, no trailing period, lower-case first letter unless it starts an acronym.</summary>
    public static string Clean(string message)
    {
        var m = WhiteSpace().Replace(message.Trim(), " ");
        if (m.EndsWith('.') && !m.EndsWith("..", StringComparison.Ordinal)) m = m[..^1];
        if (m.Length >= 2 && char.IsUpper(m[0]) && char.IsLower(m[1])) m = char.ToLowerInvariant(m[0]) + m[1..];
        return m.Length == 0 ? "failed" : m;
    }

    private static string? QuotedPath(string message) =>
        QuotedPathPattern().Match(message) is { Success: true } m ? m.Groups[1].Value : null;

    private static string FriendlyType(string typeName) => typeName switch
    {
        "System.Int32" or "System.Int64" or "System.Nullable`1[System.Int32]" or "System.Nullable`1[System.Int64]" => "an integer",
        "System.UInt64" or "System.UInt32" => "a non-negative integer",
        "System.Double" or "System.Single" or "System.Nullable`1[System.Double]" => "a number",
        "System.Boolean" => "true or false",
        _ => typeName,
    };

    [GeneratedRegex(@"\s+")] private static partial Regex WhiteSpace();
    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]*$")] private static partial Regex Identifier();
    [GeneratedRegex(@"^[A-Za-z]:[\\/]")] private static partial Regex WindowsPath();
    [GeneratedRegex(@"^[\w.-]+\.[A-Za-z][A-Za-z0-9]{1,11}$")] private static partial Regex FileName();
    [GeneratedRegex(@"'([^']*[/\\][^']*)'")] private static partial Regex QuotedPathPattern();
    [GeneratedRegex(@"^Unrecognized command or argument '(.*)'")] private static partial Regex UnrecognizedToken();
    [GeneratedRegex(@"^Required argument '(.*)' missing")] private static partial Regex MissingArgument();
    [GeneratedRegex(@"^Cannot parse argument '(.*)' for (?:option|command|argument) '.*' as expected type '(.*)'")] private static partial Regex CannotParse();
}
