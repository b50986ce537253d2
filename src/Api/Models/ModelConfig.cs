using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SlothSharp.Ops;

namespace SlothSharp.Models;

/// <summary>
/// The architecture of a Hugging Face decoder-only causal LM as data: sizes, and what the families differ in (norm form,
/// activation, biases, Q/K norms, embedding scale, attention scale, soft-caps, sliding windows per layer, RoPE per
/// layer, fused projections). Read from config.json with <see cref="Load"/>: the file's <c>model_type</c> picks a
/// <see cref="ModelFamily"/> (see <see cref="ModelFamilies"/>), which reads its keys (transformers 5's spellings and
/// the older ones) into this record. Anything SlothSharp cannot run exactly as transformers does is a
/// <see cref="ModelFormatException"/> naming the file and the field.
/// </summary>
public sealed record ModelConfig
{
    public required ModelFamily Family { get; init; }
    /// <summary>config.json's model_type (e.g. "qwen2", "gemma3_text").</summary>
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Biases on the q/k/v projections (Qwen2: always; Llama/Qwen3/Gemma: attention_bias).</summary>
    public bool QkvBias { get; init; }
    /// <summary>A bias on the output projection o_proj (Llama/Qwen3/Gemma: attention_bias; Qwen2: never).</summary>
    public bool OutputBias { get; init; }
    public bool MlpBias { get; init; }

    public GateActivation Activation { get; init; } = GateActivation.Silu;

    /// <summary>Gemma's RMSNorm: y = x̂ · (1 + w) computed in float32 (Llama's: w · x̂ with x̂ cast to the dtype first).</summary>
    public bool UnitOffsetNorms { get; init; }
    /// <summary>Gemma 2/3: four norms per layer (input, post_attention, pre_feedforward, post_feedforward); the attention
    /// and MLP outputs are normed before the residual add. Otherwise two (input, post_attention = pre-MLP).</summary>
    public bool SandwichNorms { get; init; }
    /// <summary>Qwen3, Gemma 3: RMSNorm over head_dim on each query and key head before RoPE (q_norm, k_norm).</summary>
    public bool QkNorm { get; init; }
    /// <summary>Gemma: embeddings multiplied by √hidden_size (rounded to the compute dtype).</summary>
    public bool ScaleEmbeddings { get; init; }
    /// <summary>Gemma: the attention scores' scale is query_pre_attn_scalar^-½ instead of head_dim^-½. Null: head_dim.</summary>
    public double? QueryPreAttnScalar { get; init; }

    /// <summary>The attention scores' scale: head_dim^-½, or query_pre_attn_scalar^-½ (Gemma).</summary>
    public double AttentionScale => 1 / Math.Sqrt(QueryPreAttnScalar ?? HeadDim);
    /// <summary>Gemma 2: scores ← c·tanh(scores / c) before the mask. Null: none.</summary>
    public double? AttentionSoftcap { get; init; }
    /// <summary>Gemma 2: logits ← c·tanh(logits / c). Null: none.</summary>
    public double? FinalLogitSoftcap { get; init; }

    /// <summary>Keys visible to a query on a sliding layer: the query's own position and the W − 1 before it.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Which layers use <see cref="SlidingWindow"/> (ignored without one).</summary>
    public LayerPattern SlidingLayers { get; init; } = LayerPattern.All;

    /// <summary>RoPE of the full-attention layers (and of every layer without <see cref="LocalRope"/>).</summary>
    public required RopeSpec Rope { get; init; }
    /// <summary>Gemma 3: RoPE of the sliding layers (rope_local_base_freq). Null: <see cref="Rope"/> everywhere.</summary>
    public RopeSpec? LocalRope { get; init; }

    /// <summary>Phi-3: q, k and v in one projection qkv_proj [q + 2·kv, hidden].</summary>
    public bool FusedQkv { get; init; }
    /// <summary>Phi-3: gate and up in one projection gate_up_proj [2·intermediate, hidden] (gate first).</summary>
    public bool FusedGateUp { get; init; }

    public int? BosTokenId { get; init; }
    public int[] EosTokenIds { get; init; } = [];
    public int? PadTokenId { get; init; }

    private JsonObject? _raw;

    /// <summary>config.json as read (merge and the checkpoint writer write it back); see <see cref="ToJson"/>.</summary>
    public JsonObject Raw
    {
        get => _raw ?? new JsonObject();
        init => _raw = value;
    }

    /// <summary>Number of query heads per key/value head (grouped-query attention).</summary>
    public int KvGroups => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>The sliding window of decoder layer <paramref name="layer"/>, or null for full attention.</summary>
    public int? WindowOf(int layer) => SlidingWindow is { } w && SlidingLayers.Includes(layer) ? w : null;

    /// <summary>The RoPE of decoder layer <paramref name="layer"/>.</summary>
    public RopeSpec RopeOf(int layer) => LocalRope is { } local && WindowOf(layer) is not null ? local : Rope;

    /// <summary>Reads and validates config.json.</summary>
    public static ModelConfig Load(string configJsonPath)
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
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && e is not ModelFormatException)
        {
            throw new ModelFormatException(configJsonPath, null, $"cannot be read ({e.Message})", e);
        }
        return FromJson(root, configJsonPath);
    }

    /// <summary>Validates a parsed config.json; <paramref name="file"/> names it in errors.</summary>
    public static ModelConfig FromJson(JsonObject root, string file)
    {
        ArgumentNullException.ThrowIfNull(root);
        var j = new JsonFields(root, file);
        var modelType = j.String("model_type", required: true)!;
        var family = ModelFamilies.ForModelType(modelType) ?? throw new ModelFormatException(file, "model_type",
            $"'{modelType}' is not supported (SlothSharp runs {string.Join(", ", ModelFamilies.All.SelectMany(f => f.ModelTypes).Select(t => $"'{t}'"))})");
        var config = family.ReadConfig(j, root) with { Raw = (JsonObject)root.DeepClone() };
        config.Validate(file);
        return config;
    }

    /// <summary>Throws a <see cref="ModelFormatException"/> for sizes SlothSharp cannot build.</summary>
    internal void Validate(string file)
    {
        void Positive(int v, string field) { if (v < 1) throw new ModelFormatException(file, field, $"{v} must be >= 1"); }
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new ModelFormatException(file, "num_key_value_heads", $"{NumKeyValueHeads} does not divide num_attention_heads {NumAttentionHeads}");
        if (HeadDim < 2 || HeadDim % 2 != 0) throw new ModelFormatException(file, "head_dim", $"{HeadDim} must be even and >= 2 (rotary embeddings)");
        foreach (var r in LocalRope is null ? [Rope] : new[] { Rope, LocalRope })
        {
            var rd = r.RotaryDim(HeadDim);
            if (rd < 2 || rd % 2 != 0 || rd > HeadDim)
                throw new ModelFormatException(file, "partial_rotary_factor", $"gives {rd} rotary features; need an even number in [2, head_dim {HeadDim}]");
            foreach (var (f, name) in new[] { (r.ShortFactor, "short_factor"), (r.LongFactor, "long_factor") })
                if (f is not null && f.Count != rd / 2)
                    throw new ModelFormatException(file, $"rope_parameters.{name}", $"has {f.Count} entries; the rotary dimension {rd} needs {rd / 2}");
        }
        if (!(RmsNormEps > 0)) throw new ModelFormatException(file, "rms_norm_eps", $"{RmsNormEps} must be > 0");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (SlidingWindow is { } w && w < 1) throw new ModelFormatException(file, "sliding_window", $"{w} must be >= 1");
        if (SlidingLayers.Explicit is { } flags && flags.Count != NumHiddenLayers)
            throw new ModelFormatException(file, "layer_types", $"lists {flags.Count} layers; num_hidden_layers is {NumHiddenLayers}");
        foreach (var (v, field) in new[] { (AttentionSoftcap, "attn_logit_softcapping"), (FinalLogitSoftcap, "final_logit_softcapping") })
            if (v is { } c && !(c > 0)) throw new ModelFormatException(file, field, $"{c} must be > 0");
    }

    /// <summary>eos_token_id as transformers writes it: a number for one id, a list for several.</summary>
    internal static JsonNode EosJson(int[] ids) =>
        ids.Length == 1 ? JsonValue.Create(ids[0]) : new JsonArray(ids.Select(e => (JsonNode)e).ToArray());

    /// <summary>config.json for this configuration: <see cref="Raw"/> with the sizes and special token ids of this record
    /// written over it (so a record changed with <c>with</c> writes what it holds) and layer_types re-listed for the layer
    /// count. Without quantization_config.</summary>
    public JsonObject ToJson()
    {
        var json = (JsonObject)Raw.DeepClone();
        json.Remove("quantization_config");
        json["vocab_size"] = VocabSize;
        json["hidden_size"] = HiddenSize;
        json["intermediate_size"] = IntermediateSize;
        json["num_hidden_layers"] = NumHiddenLayers;
        json["num_attention_heads"] = NumAttentionHeads;
        json["num_key_value_heads"] = NumKeyValueHeads;
        json["head_dim"] = HeadDim;
        json["max_position_embeddings"] = MaxPositionEmbeddings;
        json["tie_word_embeddings"] = TieWordEmbeddings;
        json["bos_token_id"] = BosTokenId;
        json["eos_token_id"] = EosTokenIds.Length == 0 ? null : EosJson(EosTokenIds);
        if (PadTokenId is { } pad) json["pad_token_id"] = pad;
        else json.Remove("pad_token_id");
        if (Family.WritesAttentionBias) json["attention_bias"] = QkvBias;
        if (json.ContainsKey("mlp_bias")) json["mlp_bias"] = MlpBias;
        if (json.ContainsKey("layer_types"))
            json["layer_types"] = new JsonArray(Enumerable.Range(0, NumHiddenLayers)
                .Select(i => (JsonNode)(WindowOf(i) is null ? "full_attention" : "sliding_attention")).ToArray());
        return json;
    }

    public override string ToString()
    {
        var extras = new List<string>();
        if (SlidingWindow is { } w) extras.Add($"window {w}{(SlidingLayers.Equals(LayerPattern.All) ? "" : " on some layers")}");
        if (AttentionSoftcap is { } a) extras.Add($"attention soft-cap {a}");
        if (FinalLogitSoftcap is { } f) extras.Add($"logit soft-cap {f}");
        if (TieWordEmbeddings) extras.Add("tied");
        return string.Create(CultureInfo.InvariantCulture,
            $"{Family.Name}({NumHiddenLayers} layers, hidden {HiddenSize}, {NumAttentionHeads}/{NumKeyValueHeads} heads of {HeadDim}, MLP {IntermediateSize}, vocab {VocabSize}, rope {Rope}{(extras.Count > 0 ? ", " + string.Join(", ", extras) : "")})");
    }
}

/// <summary>Which decoder layers a per-layer option (the sliding window) applies to: every layer, none, the layers
/// from <see cref="FromLayer"/> on (Qwen2's max_window_layers), all but every <see cref="Period"/>-th (Gemma: layer
/// i is sliding when (i + 1) % period ≠ 0), or an explicit list (config.json's layer_types).</summary>
public sealed record LayerPattern(int FromLayer = 0, int Period = 0, IReadOnlyList<bool>? Explicit = null, bool None = false)
{
    public static LayerPattern All { get; } = new();
    public static LayerPattern Nothing { get; } = new(None: true);

    public bool Includes(int layer)
    {
        if (None) return false;
        if (Explicit is { } e) return layer < e.Count && e[layer];
        if (layer < FromLayer) return false;
        return Period == 0 || (layer + 1) % Period != 0;
    }

    public bool Equals(LayerPattern? other) =>
        other is not null && FromLayer == other.FromLayer && Period == other.Period && None == other.None &&
        (Explicit is null ? other.Explicit is null : other.Explicit is not null && Explicit.SequenceEqual(other.Explicit));

    public override int GetHashCode() => HashCode.Combine(FromLayer, Period, None, Explicit?.Count);
}
