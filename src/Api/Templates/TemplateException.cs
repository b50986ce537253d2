namespace SlothSharp.Templates;

/// <summary>A template could not be parsed or rendered. <see cref="Line"/> and <see cref="Column"/> (1-based, 0 when
/// unknown) point into the template source; the message already names them.</summary>
public class TemplateException : Exception
{
    public TemplateException(string message, string templateName, int line, int column, Exception? inner = null)
        : base(Format(message, templateName, line, column), inner)
    {
        Reason = message;
        TemplateName = templateName;
        Line = line;
        Column = column;
    }

    /// <summary>The error without the location prefix.</summary>
    public string Reason { get; }
    public string TemplateName { get; }
    public int Line { get; }
    public int Column { get; }

    private static string Format(string message, string name, int line, int column) =>
        line <= 0 ? $"{name}: {message}" : column <= 0 ? $"{name}, line {line}: {message}" : $"{name}, line {line}, column {column}: {message}";
}
