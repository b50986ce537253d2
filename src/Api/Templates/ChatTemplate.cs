using System.Text.Json;
using System.Text.Json.Nodes;

namespace SlothSharp.Templates;

/// <summary>
/// A model's chat template, rendered as transformers' <c>apply_chat_template</c> renders it (text only, no
/// tokenization): the messages, <c>tools</c>, <c>documents</c>, <c>add_generation_prompt</c>, the special tokens as
/// strings and any extra variables. Parsed once; <see cref="Render(JsonArray, ChatRenderOptions?)"/> is thread-safe.
/// </summary>
/// <remarks>
/// Where the template comes from, as transformers resolves it for a model directory: <c>chat_template.jinja</c> wins
/// over tokenizer_config.json's <c>chat_template</c> (transformers' "the file template clobbers any template in the
/// config"); named templates live in <c>additional_chat_templates/NAME.jinja</c> or in a tokenizer_config.json list
/// of <c>{name, template}</c>, where "default" is the unnamed choice. Base models without a template can use a
/// built-in (<see cref="BuiltInNames"/>).
/// </remarks>
public sealed class ChatTemplate
{
    private static readonly HashSet<string> Reserved = ["messages", "tools", "documents", "add_generation_prompt"];

    private ChatTemplate(JinjaTemplate template, string name, ChatSpecialTokens tokens)
    {
        Template = template;
        Name = name;
        SpecialTokens = tokens;
    }

    /// <summary>Where the template came from: a built-in name, a file path, or "DIR/tokenizer_config.json:chat_template".</summary>
    public string Name { get; }

    /// <summary>The template's source text.</summary>
    public string Source => Template.Source;

    /// <summary>The tokens passed as <c>bos_token</c>, <c>eos_token</c>, <c>pad_token</c>, <c>unk_token</c>.</summary>
    public ChatSpecialTokens SpecialTokens { get; }

    /// <summary>The parsed template.</summary>
    public JinjaTemplate Template { get; }

    /// <summary>The names <see cref="BuiltIn"/> and <see cref="Resolve"/> accept: chatml, llama-3, gemma, mistral,
    /// phi-3, qwen-2.5, alpaca.</summary>
    public static IReadOnlyList<string> BuiltInNames => BuiltInChatTemplates.Names;

    /// <summary>A template from its source text.</summary>
    /// <exception cref="TemplateSyntaxException">The template does not parse.</exception>
    public static ChatTemplate FromString(string source, ChatSpecialTokens? specialTokens = null, string name = "<chat template>") =>
        new(JinjaTemplate.Parse(source, name), name, specialTokens ?? ChatSpecialTokens.None);

    /// <summary>A built-in template (see <see cref="BuiltInNames"/>, case-insensitive).</summary>
    public static ChatTemplate BuiltIn(string name, ChatSpecialTokens? specialTokens = null) =>
        FromString(BuiltInChatTemplates.Source(name), specialTokens, "built-in:" + name.ToLowerInvariant());

    /// <summary>A template file: a .jinja text file, or a JSON file with a <c>chat_template</c> member (a
    /// tokenizer_config.json).</summary>
    public static ChatTemplate FromFile(string path, ChatSpecialTokens? specialTokens = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"chat template file not found: {path}", path);
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            var config = ReadJsonObject(path);
            var (source, label) = SelectFromConfig(config, path, null)
                ?? throw new InvalidDataException($"{path}: no 'chat_template' member");
            return FromString(source, specialTokens ?? ChatSpecialTokens.FromTokenizerConfig(config, path), label);
        }
        return FromString(File.ReadAllText(path), specialTokens, path);
    }

    /// <summary>The template of a Hugging Face model directory (see the remarks for the order), with the special
    /// tokens of its tokenizer_config.json.</summary>
    /// <param name="modelDir">The directory holding tokenizer_config.json and/or chat_template.jinja.</param>
    /// <param name="templateName">A named template; null picks the default one.</param>
    /// <exception cref="InvalidDataException">The directory has no chat template (or not that name); the message
    /// lists the names it has and the built-ins.</exception>
    public static ChatTemplate FromModelDirectory(string modelDir, string? templateName = null)
    {
        return TryFromModelDirectory(modelDir, templateName, out var template, out var problem)
            ? template
            : throw new InvalidDataException(problem);
    }

    /// <summary>What <c>--chat-template NAME|FILE</c> means: a built-in name, an existing file
    /// (<see cref="FromFile"/>), or a named template of <paramref name="modelDir"/>. Special tokens come from
    /// <paramref name="modelDir"/>'s tokenizer_config.json when there is one.</summary>
    /// <exception cref="ArgumentException">Neither a built-in, a file nor a template of the model.</exception>
    public static ChatTemplate Resolve(string nameOrFile, string? modelDir)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrFile);
        var tokens = ChatSpecialTokens.None;
        var configPath = modelDir is null ? null : Path.Combine(modelDir, "tokenizer_config.json");
        if (configPath is not null && File.Exists(configPath))
            tokens = ChatSpecialTokens.FromTokenizerConfig(ReadJsonObject(configPath), configPath);
        if (BuiltInChatTemplates.IsBuiltIn(nameOrFile)) return BuiltIn(nameOrFile, tokens);
        if (File.Exists(nameOrFile))
            return FromFile(nameOrFile, nameOrFile.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? null : tokens);
        if (modelDir is not null && TryFromModelDirectory(modelDir, nameOrFile, out var named, out _)) return named;
        throw new ArgumentException(
            $"chat template '{nameOrFile}' is neither a built-in ({string.Join(", ", BuiltInNames)}), an existing file, "
            + (modelDir is null ? "nor (no model directory given) a named template of the model" : $"nor a named template of {modelDir}"),
            nameof(nameOrFile));
    }

    private static bool TryFromModelDirectory(string modelDir, string? templateName, out ChatTemplate template, out string problem)
    {
        template = null!;
        if (!Directory.Exists(modelDir)) { problem = $"model directory not found: {modelDir}"; return false; }
        var configPath = Path.Combine(modelDir, "tokenizer_config.json");
        JsonObject? config = File.Exists(configPath) ? ReadJsonObject(configPath) : null;
        var tokens = config is null ? ChatSpecialTokens.None : ChatSpecialTokens.FromTokenizerConfig(config, configPath);
        var wantDefault = templateName is null || templateName == "default";

        var jinjaPath = Path.Combine(modelDir, "chat_template.jinja");
        if (wantDefault && File.Exists(jinjaPath))
        {
            template = FromString(File.ReadAllText(jinjaPath), tokens, jinjaPath);
            problem = "";
            return true;
        }
        if (!wantDefault)
        {
            var namedPath = Path.Combine(modelDir, "additional_chat_templates", templateName + ".jinja");
            if (File.Exists(namedPath))
            {
                template = FromString(File.ReadAllText(namedPath), tokens, namedPath);
                problem = "";
                return true;
            }
        }
        var selected = config is null ? null : SelectFromConfig(config, configPath, templateName);
        if (selected is { } found)
        {
            template = FromString(found.Source, tokens, found.Label);
            problem = "";
            return true;
        }
        var available = AvailableNames(modelDir, config);
        problem = $"{modelDir} has no chat template{(wantDefault ? "" : $" named '{templateName}'")} "
            + $"(looked for chat_template.jinja, additional_chat_templates/*.jinja and tokenizer_config.json's chat_template)"
            + (available.Count > 0 ? $"; it has: {string.Join(", ", available)}" : "")
            + $". Built-in templates for base models: {string.Join(", ", BuiltInNames)}.";
        return false;
    }

    private static List<string> AvailableNames(string modelDir, JsonObject? config)
    {
        var names = new List<string>();
        if (File.Exists(Path.Combine(modelDir, "chat_template.jinja"))) names.Add("default");
        var extra = Path.Combine(modelDir, "additional_chat_templates");
        if (Directory.Exists(extra)) names.AddRange(Directory.GetFiles(extra, "*.jinja").Select(f => Path.GetFileNameWithoutExtension(f)!));
        if (config?["chat_template"] is JsonValue) names.Add("default");
        if (config?["chat_template"] is JsonArray list)
            names.AddRange(list.OfType<JsonObject>().Select(o => o["name"]?.GetValue<string>()).OfType<string>());
        return names.Distinct().ToList();
    }

    /// <summary>tokenizer_config.json's chat_template: a string (the default template) or a list of
    /// <c>{"name", "template"}</c>.</summary>
    private static (string Source, string Label)? SelectFromConfig(JsonObject config, string path, string? templateName)
    {
        var node = config["chat_template"];
        var wanted = templateName ?? "default";
        switch (node)
        {
            case null: return null;
            case JsonValue v when v.TryGetValue<string>(out var s):
                return wanted == "default" ? (s, path + ":chat_template") : null;
            case JsonArray list:
                for (var i = 0; i < list.Count; i++)
                {
                    if (list[i] is not JsonObject entry || entry["name"] is not JsonValue n || !n.TryGetValue<string>(out var name)
                        || entry["template"] is not JsonValue t || !t.TryGetValue<string>(out var source))
                        throw new InvalidDataException($"{path}: chat_template[{i}] must be an object with string 'name' and 'template'");
                    if (name == wanted) return (source, $"{path}:chat_template[{name}]");
                }
                return null;
            default:
                throw new InvalidDataException($"{path}: 'chat_template' must be a string or a list of {{name, template}} objects");
        }
    }

    private static JsonObject ReadJsonObject(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new InvalidDataException($"{path}: expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON (line {e.LineNumber + 1}): {e.Message}", e);
        }
    }

    /// <summary>Renders a conversation. Each message is a JSON object (role, content as a string or a list of parts,
    /// tool_calls, tool_call_id, name, reasoning_content, ...), passed to the template as is.</summary>
    /// <exception cref="ChatTemplateException">The template rejected the conversation (raise_exception).</exception>
    /// <exception cref="TemplateRuntimeException">Rendering failed.</exception>
    public TemplateRenderResult Render(JsonArray messages, ChatRenderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        options ??= new ChatRenderOptions();
        var variables = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        foreach (var (k, v) in SpecialTokens.AsVariables()) variables[k] = v;
        if (options.Variables is not null)
            foreach (var (k, v) in options.Variables)
            {
                if (Reserved.Contains(k)) throw new ArgumentException($"'{k}' is set by ChatTemplate.Render itself and cannot be passed as a variable", nameof(options));
                variables[k] = v;
            }
        variables["messages"] = messages;
        variables["tools"] = options.Tools;
        variables["documents"] = options.Documents;
        variables["add_generation_prompt"] = options.AddGenerationPrompt;
        return Template.Render(variables, options.Clock);
    }

    /// <summary>Renders typed messages (see <see cref="ChatMessage"/>).</summary>
    public TemplateRenderResult Render(IEnumerable<ChatMessage> messages, ChatRenderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        return Render(new JsonArray(messages.Select(m => (JsonNode?)m.ToJson()).ToArray()), options);
    }
}
