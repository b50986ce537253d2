using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SlothSharp.Models;

/// <summary>Rotary-embedding frequency scaling. <see cref="Type"/>: "llama3" (all fields used) or "linear" (only
/// <see cref="Factor"/>); no scaling is a null <see cref="LlamaConfig.RopeScaling"/>.</summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor,
                                 int OriginalMaxPositionEmbeddings);

/// <summary>
/// The architecture of a Hugging Face Llama checkpoint (config.json, <c>model_type</c> "llama": Llama 2, 3, 3.1, 3.2).
/// Read with <see cref="Load"/>; anything SlothSharp cannot run exactly as transformers does is a
/// <see cref="ModelFormatException"/> naming the file and the field.
/// </summary>
public sealed record LlamaConfig(int VocabSize, int HiddenSize, int IntermediateSize, int NumHiddenLayers,
                                 int NumAttentionHeads, int NumKeyValueHeads, int HeadDim, double RmsNormEps,
                                 double RopeTheta, RopeScaling? RopeScaling, bool TieWordEmbeddings, bool AttentionBias,
                                 bool MlpBias, int MaxPositionEmbeddings, int? BosTokenId, int[] EosTokenIds,
                                 int? PadTokenId)
{
    private JsonObject? _raw;

    /// <summary>config.json as read (merge writes it back); for a config built in code, the JSON transformers would
    /// write for it (<see cref="ToJson"/>).</summary>
    public JsonObject Raw
    {
        get => _raw ?? ToJson();
        init => _raw = value;
    }

    /// <summary>Llama-3.2-1B's architecture (random weights only: there is no network here).</summary>
    public static LlamaConfig Llama32_1B { get; } = new(128256, 2048, 8192, 16, 32, 8, 64, 1e-5, 500_000,
        new RopeScaling("llama3", 32, 1, 4, 8192), TieWordEmbeddings: true, AttentionBias: false, MlpBias: false,
        MaxPositionEmbeddings: 131072, BosTokenId: 128000, EosTokenIds: [128001], PadTokenId: null);

    /// <summary>A tiny Llama for tests (the shape of tests/data/hf-tiny-llama).</summary>
    public static LlamaConfig Tiny { get; } = new(420, 64, 160, 2, 4, 2, 16, 1e-5, 500_000,
        new RopeScaling("llama3", 32, 1, 4, 64), TieWordEmbeddings: true, AttentionBias: false, MlpBias: false,
        MaxPositionEmbeddings: 256, BosTokenId: 0, EosTokenIds: [1], PadTokenId: 2);

    /// <summary>Number of key/value heads' query heads (grouped-query attention).</summary>
    public int KvGroups => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Reads and validates config.json.</summary>
    public static LlamaConfig Load(string configJsonPath)
    {
        ArgumentNullException.ThrowIfNull(configJsonPath);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(configJsonPath)) as JsonObject
                   ?? throw new ModelFormatException(configJsonPath, null, "not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(configJsonPath, null, $"not valid JSON ({e.Message})", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(configJsonPath, null, $"cannot be read ({e.Message})", e);
        }
        return FromJson(root, configJsonPath);
    }

    /// <summary>Validates a parsed config.json; <paramref name="file"/> names it in errors.</summary>
    public static LlamaConfig FromJson(JsonObject root, string file)
    {
        var j = new JsonFields(root, file);
        var modelType = j.String("model_type", required: true);
        if (modelType != "llama")
            throw new ModelFormatException(file, "model_type", $"'{modelType}' is not supported (SlothSharp runs 'llama')");
        var act = j.String("hidden_act") ?? "silu";
        if (act != "silu") throw new ModelFormatException(file, "hidden_act", $"'{act}' is not supported (Llama uses 'silu')");
        if (j.Int("pretraining_tp") is { } tp && tp != 1)
            throw new ModelFormatException(file, "pretraining_tp", $"{tp} is not supported (only 1)");

        var vocab = j.Int("vocab_size", required: true, min: 1)!.Value;
        var hidden = j.Int("hidden_size", required: true, min: 1)!.Value;
        var inter = j.Int("intermediate_size", required: true, min: 1)!.Value;
        var layers = j.Int("num_hidden_layers", required: true, min: 1)!.Value;
        var heads = j.Int("num_attention_heads", required: true, min: 1)!.Value;
        var kvHeads = j.Int("num_key_value_heads", min: 1) ?? heads;
        if (heads % kvHeads != 0)
            throw new ModelFormatException(file, "num_key_value_heads", $"{kvHeads} does not divide num_attention_heads {heads}");
        var headDim = j.Int("head_dim", min: 2) ?? (hidden % heads == 0 ? hidden / heads
            : throw new ModelFormatException(file, "num_attention_heads", $"{heads} does not divide hidden_size {hidden} and there is no head_dim"));
        if (headDim % 2 != 0) throw new ModelFormatException(file, "head_dim", $"{headDim} must be even (rotary embeddings)");
        var eps = j.Double("rms_norm_eps") ?? 1e-6;  // transformers' LlamaConfig default
        if (!(eps > 0)) throw new ModelFormatException(file, "rms_norm_eps", $"{eps} must be > 0");
        var maxPos = j.Int("max_position_embeddings", min: 1) ?? 2048;

        var (theta, scaling) = ReadRope(j, root, file);
        var eos = root["eos_token_id"] switch
        {
            null => Array.Empty<int>(),
            JsonArray a => a.Select((n, i) => JsonFields.AsInt(n, $"eos_token_id[{i}]", file)).ToArray(),
            var n => [JsonFields.AsInt(n, "eos_token_id", file)],
        };
        return new LlamaConfig(vocab, hidden, inter, layers, heads, kvHeads, headDim, eps, theta, scaling,
            j.Bool("tie_word_embeddings") ?? false, j.Bool("attention_bias") ?? false, j.Bool("mlp_bias") ?? false,
            maxPos, j.Int("bos_token_id"), eos, j.Int("pad_token_id"))
        { Raw = (JsonObject)root.DeepClone() };
    }

    /// <summary>transformers 5 writes <c>rope_parameters</c> {rope_type, rope_theta, …}; older versions write
    /// <c>rope_theta</c> and <c>rope_scaling</c> {type | rope_type, …}. Both are read.</summary>
    private static (double Theta, RopeScaling? Scaling) ReadRope(JsonFields j, JsonObject root, string file)
    {
        string field;
        JsonFields? r = null;
        if (root["rope_parameters"] is not null)
        {
            field = "rope_parameters";
            r = j.Object(field);
        }
        else
        {
            field = "rope_scaling";
            if (root["rope_scaling"] is not null) r = j.Object(field);
        }
        var theta = r?.Double("rope_theta") ?? j.Double("rope_theta") ?? 10_000;
        if (!(theta > 0)) throw new ModelFormatException(file, "rope_theta", $"{theta} must be > 0");
        if (r is null) return (theta, null);
        var type = r.String("rope_type") ?? r.String("type") ?? "default";
        switch (type)
        {
            case "default":
                return (theta, null);
            case "linear":
            {
                var factor = r.Double("factor", required: true)!.Value;
                if (!(factor > 0)) throw new ModelFormatException(file, $"{field}.factor", $"{factor} must be > 0");
                return (theta, new RopeScaling("linear", factor, 0, 0, 0));
            }
            case "llama3":
            {
                var factor = r.Double("factor", required: true)!.Value;
                var low = r.Double("low_freq_factor", required: true)!.Value;
                var high = r.Double("high_freq_factor", required: true)!.Value;
                var orig = r.Int("original_max_position_embeddings", required: true, min: 1)!.Value;
                if (!(factor > 0)) throw new ModelFormatException(file, $"{field}.factor", $"{factor} must be > 0");
                if (!(high > low) || !(low > 0))
                    throw new ModelFormatException(file, $"{field}.high_freq_factor", $"need high_freq_factor {high} > low_freq_factor {low} > 0");
                return (theta, new RopeScaling("llama3", factor, low, high, orig));
            }
            default:
                throw new ModelFormatException(file, $"{field}.rope_type",
                    $"'{type}' is not supported (SlothSharp implements llama3, linear and default)");
        }
    }

    /// <summary>eos_token_id as transformers writes it: a number for one id, a list for several.</summary>
    internal static JsonNode EosJson(int[] ids) =>
        ids.Length == 1 ? JsonValue.Create(ids[0]) : new JsonArray(ids.Select(e => (JsonNode)e).ToArray());

    /// <summary>config.json as transformers 5 writes it for this architecture (no quantization_config).</summary>
    public JsonObject ToJson()
    {
        var rope = new JsonObject { ["rope_theta"] = RopeTheta, ["rope_type"] = RopeScaling?.Type ?? "default" };
        if (RopeScaling is { } s)
        {
            rope["factor"] = s.Factor;
            if (s.Type == "llama3")
            {
                rope["high_freq_factor"] = s.HighFreqFactor;
                rope["low_freq_factor"] = s.LowFreqFactor;
                rope["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings;
            }
        }
        return new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["attention_bias"] = AttentionBias,
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = BosTokenId,
            ["dtype"] = "bfloat16",
            ["eos_token_id"] = EosJson(EosTokenIds),
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["hidden_size"] = HiddenSize,
            ["initializer_range"] = 0.02,
            ["intermediate_size"] = IntermediateSize,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["mlp_bias"] = MlpBias,
            ["model_type"] = "llama",
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["pad_token_id"] = PadTokenId,
            ["pretraining_tp"] = 1,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_parameters"] = rope,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["transformers_version"] = "5.17.0",
            ["use_cache"] = true,
            ["vocab_size"] = VocabSize,
        };
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"Llama({NumHiddenLayers} layers, hidden {HiddenSize}, {NumAttentionHeads}/{NumKeyValueHeads} heads of {HeadDim}, MLP {IntermediateSize}, vocab {VocabSize}, rope {RopeScaling?.Type ?? "default"} θ {RopeTheta}{(TieWordEmbeddings ? ", tied" : "")})");
}

/// <summary>Typed reads of config.json fields with errors that name the file and the (dotted) field.</summary>
internal sealed class JsonFields(JsonObject obj, string file, string prefix = "")
{
    public string File => file;

    private JsonNode? Get(string name, bool required)
    {
        var n = obj[name];
        if (n is null && required) throw new ModelFormatException(file, prefix + name, "is missing");
        return n;
    }

    public JsonFields Object(string name) =>
        Get(name, true) is JsonObject o ? new JsonFields(o, file, prefix + name + ".")
            : throw new ModelFormatException(file, prefix + name, $"must be a JSON object; got {obj[name]!.ToJsonString()}");

    public string? String(string name, bool required = false)
    {
        var n = Get(name, required);
        if (n is null) return null;
        return n is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw new ModelFormatException(file, prefix + name, $"must be a string; got {n.ToJsonString()}");
    }

    public int? Int(string name, bool required = false, int min = int.MinValue)
    {
        var n = Get(name, required);
        if (n is null) return null;
        var value = AsInt(n, prefix + name, file);
        return value >= min ? value : throw new ModelFormatException(file, prefix + name, $"{value} must be >= {min}");
    }

    public double? Double(string name, bool required = false)
    {
        var n = Get(name, required);
        if (n is null) return null;
        return n is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>()
            : throw new ModelFormatException(file, prefix + name, $"must be a number; got {n.ToJsonString()}");
    }

    public bool? Bool(string name, bool required = false)
    {
        var n = Get(name, required);
        if (n is null) return null;
        return n is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>()
            : throw new ModelFormatException(file, prefix + name, $"must be true or false; got {n.ToJsonString()}");
    }

    public static int AsInt(JsonNode? n, string field, string file) =>
        n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var i) ? i
            : throw new ModelFormatException(file, field, $"must be an integer; got {n?.ToJsonString() ?? "null"}");
}
