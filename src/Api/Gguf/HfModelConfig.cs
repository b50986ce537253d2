using System.Text.Json.Nodes;

namespace SlothSharp.Gguf;

/// <summary>
/// The config.json fields the GGUF export needs, read once with clear errors. Understands both transformers 4
/// (<c>rope_theta</c>, <c>rope_scaling</c>) and transformers 5 (<c>rope_parameters</c>, possibly per layer type, as
/// Gemma 3 writes it) spellings.
/// </summary>
internal sealed class HfModelConfig(JsonObject root, string file)
{
    public JsonObject Root { get; } = root;
    public string File { get; } = file;

    public string ModelType => Str("model_type") ?? throw Missing("model_type");
    public int HiddenSize => Int("hidden_size") ?? throw Missing("hidden_size");
    public int IntermediateSize => Int("intermediate_size") ?? throw Missing("intermediate_size");
    public int NumLayers => Int("num_hidden_layers") ?? throw Missing("num_hidden_layers");
    public int NumHeads => Int("num_attention_heads") ?? throw Missing("num_attention_heads");
    public int NumKvHeads => Int("num_key_value_heads") ?? NumHeads;
    public int HeadDim => Int("head_dim") ?? HiddenSize / NumHeads;
    public bool HasExplicitHeadDim => Int("head_dim") is not null;
    public int ContextLength => Int("max_position_embeddings") ?? throw Missing("max_position_embeddings");
    public double RmsEps => Dbl("rms_norm_eps") ?? throw Missing("rms_norm_eps");
    public int? VocabSize => Int("vocab_size");
    public bool? TieWordEmbeddings => Root["tie_word_embeddings"] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : null;
    public int? SlidingWindow => Int("sliding_window");

    /// <summary>The RoPE parameters object: transformers 5's <c>rope_parameters</c> (for Gemma 3, the
    /// <paramref name="layerType"/> entry), else transformers 4's <c>rope_scaling</c>; null when neither exists.</summary>
    public JsonObject? RopeParameters(string layerType = "full_attention")
    {
        if (Root["rope_parameters"] is JsonObject rp)
            return rp[layerType] is JsonObject per ? per : rp;
        return Root["rope_scaling"] as JsonObject;
    }

    public double RopeTheta(string layerType = "full_attention", double fallback = 10000) =>
        Dbl("rope_theta") ?? (RopeParameters(layerType)?["rope_theta"] is JsonValue v ? v.GetValue<double>() : fallback);

    /// <summary>"default", "linear", "llama3", "yarn", ... (rope_type, or type in old configs).</summary>
    public string RopeType(string layerType = "full_attention")
    {
        var p = RopeParameters(layerType);
        return (p?["rope_type"] ?? p?["type"]) is JsonValue v ? v.GetValue<string>() : "default";
    }

    public string? Str(string name) => Root[name] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    public int? Int(string name) => Root[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<int>(out var i) => i,
        JsonValue v when v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue => (int)d,
        var other => throw new InvalidDataException($"{File}: '{name}' must be an integer, found {other.ToJsonString()}"),
    };

    public double? Dbl(string name) => Root[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        var other => throw new InvalidDataException($"{File}: '{name}' must be a number, found {other.ToJsonString()}"),
    };

    public static double? Dbl(JsonObject? o, string name) => o?[name] is JsonValue v && v.TryGetValue<double>(out var d) ? d : null;

    public InvalidDataException Missing(string field) => new($"{File}: required field '{field}' is missing");
}
