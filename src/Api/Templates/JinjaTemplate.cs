using System.Text.Json.Nodes;

namespace SlothSharp.Templates;

/// <summary>
/// A parsed Jinja template (the subset chat templates use), rendered as transformers renders chat templates:
/// ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension (break/continue),
/// the <c>{% generation %}</c> tag, json.dumps-style <c>tojson</c>, and the globals <c>raise_exception</c>,
/// <c>strftime_now</c>, <c>range</c>, <c>namespace</c> and <c>dict</c>.
/// </summary>
/// <remarks>Sandboxed by construction: variables come in as JSON and templates only ever see JSON-like values, so
/// no .NET member is reachable. Parse once, render many times, from any number of threads.</remarks>
public sealed class JinjaTemplate
{
    private readonly IReadOnlyList<Node> _body;

    private JinjaTemplate(string source, string name, IReadOnlyList<Node> body)
    {
        Source = source;
        Name = name;
        _body = body;
    }

    /// <summary>The template text as given.</summary>
    public string Source { get; }

    /// <summary>The name used in error messages (a file path, "tokenizer_config.json:chat_template", ...).</summary>
    public string Name { get; }

    /// <summary>Parses <paramref name="source"/>.</summary>
    /// <exception cref="TemplateSyntaxException">The template is malformed; the message names the line and column.</exception>
    public static JinjaTemplate Parse(string source, string name = "<template>")
    {
        ArgumentNullException.ThrowIfNull(source);
        return new JinjaTemplate(source, name, TemplateParser.Parse(source, name));
    }

    /// <summary>Renders with the given variables (JSON values; a missing variable is Jinja's Undefined, a JSON null
    /// is None).</summary>
    /// <param name="variables">The template's variables by name.</param>
    /// <param name="clock">What <c>strftime_now</c> reads (local time); the system clock when null.</param>
    /// <exception cref="TemplateRuntimeException">Rendering failed (type error, undefined used where Jinja errors).</exception>
    /// <exception cref="ChatTemplateException">The template called <c>raise_exception</c>.</exception>
    public TemplateRenderResult Render(IEnumerable<KeyValuePair<string, JsonNode?>> variables, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var globals = new Scope(null);
        TemplateGlobals.AddTo(globals);
        var context = new Scope(globals);
        foreach (var (key, value) in variables) context.Set(key, JsonValues.FromJson(value));
        // Template-level sets go into their own frame, so they shadow but never overwrite the caller's variables.
        return new Renderer(Name, clock ?? TimeProvider.System).Run(_body, new Scope(context));
    }
}
