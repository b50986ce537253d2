namespace SlothSharp.Templates;

/// <summary>The template itself rejected its input by calling <c>raise_exception('...')</c> (for example "Conversation
/// roles must alternate user/assistant/..."). <see cref="Exception.Message"/> is the template's message, unchanged, as
/// transformers raises it (TemplateError); <see cref="Line"/> says where the call was.</summary>
public sealed class ChatTemplateException(string message, string templateName, int line) : Exception(message)
{
    public string TemplateName { get; } = templateName;
    public int Line { get; } = line;
}
