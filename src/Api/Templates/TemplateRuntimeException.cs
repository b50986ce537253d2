namespace SlothSharp.Templates;

/// <summary>Rendering failed: an undefined value used where Jinja errors (attribute of undefined, arithmetic on
/// undefined), a type error (<c>'a' + 1</c>), an unknown filter argument. <see cref="TemplateException.Line"/> is the
/// line of the expression or statement that failed.</summary>
public sealed class TemplateRuntimeException(string message, string templateName, int line, Exception? inner = null)
    : TemplateException(message, templateName, line, 0, inner);
