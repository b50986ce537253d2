namespace SlothSharp.Templates;

/// <summary>The template source is not valid (in the Jinja subset this engine supports): an unknown tag, an unclosed
/// block, a malformed expression. Raised by <see cref="JinjaTemplate.Parse"/>, never while rendering.</summary>
public sealed class TemplateSyntaxException(string message, string templateName, int line, int column)
    : TemplateException(message, templateName, line, column);
