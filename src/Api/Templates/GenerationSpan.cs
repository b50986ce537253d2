namespace SlothSharp.Templates;

/// <summary>Where the text rendered inside one <c>{% generation %}...{% endgeneration %}</c> block landed in the
/// output: UTF-16 offsets into <see cref="TemplateRenderResult.Text"/>, [Start, End). transformers uses these spans
/// to build the assistant-token mask (return_assistant_tokens_mask); Python reports them in code points, which
/// differ from these offsets only after characters outside the BMP (emoji).</summary>
public readonly record struct GenerationSpan(int Start, int Length)
{
    public int End => Start + Length;
}
