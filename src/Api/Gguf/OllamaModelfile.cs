using System.Text;
using System.Text.Json.Nodes;

namespace SlothSharp.Gguf;

/// <summary>
/// An Ollama Modelfile for an exported GGUF: FROM the file (and ADAPTER for a GGUF LoRA), a TEMPLATE in Ollama's Go
/// template syntax when the model's Jinja chat template is one of the well-known formats (Llama 3, ChatML as Qwen uses
/// it, Gemma, Mistral [INST], Phi-3), and PARAMETER stop lines with the end-of-turn markers. Jinja itself is not
/// translated: an unknown template gets a comment instead of a guess, and Ollama then uses the GGUF's own template.
/// </summary>
public static class OllamaModelfile
{
    /// <summary>A known chat format: the markers that identify it in a Jinja template, Ollama's template, stop words.</summary>
    private sealed record Format(string Name, string[] Markers, string Template, string[] Stops);

    private static readonly Format[] Formats =
    [
        new("llama3", ["<|start_header_id|>", "<|eot_id|>"],
            """
            {{- if .System }}<|start_header_id|>system<|end_header_id|>

            {{ .System }}<|eot_id|>
            {{- end }}
            {{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

            {{ .Content }}<|eot_id|>
            {{- end }}<|start_header_id|>assistant<|end_header_id|>


            """,
            ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]),
        new("chatml", ["<|im_start|>", "<|im_end|>"],
            """
            {{- if .System }}<|im_start|>system
            {{ .System }}<|im_end|>
            {{ end }}
            {{- range .Messages }}<|im_start|>{{ .Role }}
            {{ .Content }}<|im_end|>
            {{ end }}<|im_start|>assistant

            """,
            ["<|im_end|>", "<|im_start|>"]),
        new("gemma", ["<start_of_turn>", "<end_of_turn>"],
            """
            {{- if .System }}<start_of_turn>user
            {{ .System }}<end_of_turn>
            {{ end }}
            {{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}{{ .Role }}{{ end }}
            {{ .Content }}<end_of_turn>
            {{ end }}<start_of_turn>model

            """,
            ["<end_of_turn>", "<start_of_turn>"]),
        new("phi3", ["<|user|>", "<|end|>", "<|assistant|>"],
            """
            {{- if .System }}<|system|>
            {{ .System }}<|end|>
            {{ end }}
            {{- range .Messages }}<|{{ .Role }}|>
            {{ .Content }}<|end|>
            {{ end }}<|assistant|>

            """,
            ["<|end|>", "<|user|>", "<|assistant|>"]),
        new("mistral", ["[INST]", "[/INST]"],
            """
            {{- range $i, $_ := .Messages }}
            {{- if eq .Role "user" }}[INST] {{ if and $.System (eq $i 0) }}{{ $.System }}

            {{ end }}{{ .Content }}[/INST]
            {{- else if eq .Role "assistant" }} {{ .Content }}</s>
            {{- end }}
            {{- end }}
            """,
            ["[INST]", "[/INST]", "</s>"]),
    ];

    /// <summary>The known format a Jinja chat template uses ("llama3", "chatml", "gemma", "phi3", "mistral"), or null.</summary>
    public static string? DetectFormat(string? chatTemplate) =>
        chatTemplate is null ? null : Formats.FirstOrDefault(f => f.Markers.All(chatTemplate.Contains))?.Name;

    /// <summary>The Modelfile text.</summary>
    /// <param name="from">Path written after FROM (usually the GGUF's file name, relative to the Modelfile).</param>
    /// <param name="chatTemplate">The model's Jinja chat template (tokenizer.chat_template), if any.</param>
    /// <param name="eosToken">The EOS token's text, added as a stop word.</param>
    /// <param name="adapter">A GGUF LoRA file for an ADAPTER line, or null.</param>
    public static string Build(string from, string? chatTemplate, string? eosToken, string? adapter = null)
    {
        var sb = new StringBuilder();
        sb.Append("# Ollama Modelfile written by SlothSharp (`ollama create NAME -f Modelfile`)\n");
        sb.Append($"FROM {Quote(from)}\n");
        if (adapter is not null) sb.Append($"ADAPTER {Quote(adapter)}\n");
        var format = chatTemplate is null ? null : Formats.FirstOrDefault(f => f.Markers.All(chatTemplate.Contains));
        if (format is not null)
        {
            if (format.Template.Contains("\"\"\"", StringComparison.Ordinal)) throw new InvalidOperationException("template contains \"\"\"");
            sb.Append($"# chat format: {format.Name} (translated from the model's chat template)\n");
            sb.Append("TEMPLATE \"\"\"").Append(format.Template).Append("\"\"\"\n");
        }
        else if (chatTemplate is not null)
            sb.Append("# the model's chat template is not a known format; Ollama uses the template stored in the GGUF\n");
        else
            sb.Append("# the model has no chat template: plain completion\n");
        var stops = new List<string>(format?.Stops ?? []);
        if (eosToken is not null && !stops.Contains(eosToken)) stops.Add(eosToken);
        foreach (var s in stops) sb.Append($"PARAMETER stop {Quote(s)}\n");
        return sb.ToString();
    }

    /// <summary>Writes <c>Modelfile</c> beside <paramref name="ggufPath"/> (FROM ./file.gguf), with the template and
    /// EOS from the model directory's tokenizer files. Returns the Modelfile's path.</summary>
    public static string WriteBeside(string ggufPath, string modelDir, string? adapterGgufPath = null)
    {
        var configPath = Path.Combine(modelDir, "config.json");
        var config = File.Exists(configPath) ? JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? [] : [];
        var tok = GgufTokenizerMetadata.FromDirectory(modelDir, config);
        var dir = Path.GetDirectoryName(Path.GetFullPath(ggufPath))!;
        var text = Build("./" + Path.GetFileName(ggufPath), tok.ChatTemplate, tok.TokenText(tok.EosId),
            adapterGgufPath is null ? null : Path.GetRelativePath(dir, Path.GetFullPath(adapterGgufPath)));
        var path = Path.Combine(dir, "Modelfile");
        var tmp = path + $".{Guid.NewGuid():N}.tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
        return path;
    }

    private static string Quote(string s) => s.Any(c => char.IsWhiteSpace(c) || c == '"') ? "\"" + s.Replace("\"", "\\\"") + "\"" : s;
}
