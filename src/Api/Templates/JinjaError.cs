namespace SlothSharp.Templates;

/// <summary>An error raised by a value operation (a type error, an undefined used where Jinja errors). The renderer
/// catches it and rethrows it as a <see cref="TemplateRuntimeException"/> with the template name and line.</summary>
internal sealed class JinjaError(string message) : Exception(message);
