using System.Text.Json.Nodes;

namespace SlothSharp.Templates;

/// <summary>The special tokens a chat template sees as strings (<c>bos_token</c>, <c>eos_token</c>, ...), as
/// transformers passes its special_tokens_map. A null token is not defined in the template at all.</summary>
public sealed record ChatSpecialTokens(string? Bos = null, string? Eos = null, string? Pad = null, string? Unk = null)
{
    public static ChatSpecialTokens None { get; } = new();

    /// <summary>Reads <c>bos_token</c>, <c>eos_token</c>, <c>pad_token</c> and <c>unk_token</c> from a
    /// tokenizer_config.json object; each may be a string or an AddedToken object whose <c>content</c> is used.</summary>
    /// <exception cref="InvalidDataException">A token is neither a string, null nor an object with a string
    /// <c>content</c>.</exception>
    public static ChatSpecialTokens FromTokenizerConfig(JsonObject config, string sourceName = "tokenizer_config.json")
    {
        ArgumentNullException.ThrowIfNull(config);
        string? Read(string key)
        {
            var node = config[key];
            switch (node)
            {
                case null: return null;
                case JsonValue v when v.TryGetValue<string>(out var s): return s;
                case JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var content): return content;
                default: throw new InvalidDataException($"{sourceName}: '{key}' must be a string or an object with a string 'content', got {node.ToJsonString()}");
            }
        }
        return new ChatSpecialTokens(Read("bos_token"), Read("eos_token"), Read("pad_token"), Read("unk_token"));
    }

    internal IEnumerable<KeyValuePair<string, JsonNode?>> AsVariables()
    {
        if (Bos is not null) yield return new("bos_token", Bos);
        if (Eos is not null) yield return new("eos_token", Eos);
        if (Unk is not null) yield return new("unk_token", Unk);
        if (Pad is not null) yield return new("pad_token", Pad);
    }
}
