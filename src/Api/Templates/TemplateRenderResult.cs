namespace SlothSharp.Templates;

/// <summary>The output of one render: the text and the spans of its <c>{% generation %}</c> blocks, in order.</summary>
public sealed record TemplateRenderResult(string Text, IReadOnlyList<GenerationSpan> GenerationSpans);
