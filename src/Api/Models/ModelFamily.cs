using System.Text.Json.Nodes;
using SlothSharp.Ops;

namespace SlothSharp.Models;

/// <summary>
/// A model family: the config.json keys it reads and what its architecture differs in from the shared decoder
/// (<see cref="CausalLM"/>). A family states only its differences: <see cref="ReadConfig"/> starts from the common
/// reading (<see cref="ReadCommon"/>: sizes, special tokens, RoPE) and sets the options of <see cref="ModelConfig"/> it
/// needs; the module tree, the weight names (<see cref="DecoderLayout"/>), loading, random init, the checkpoint writer,
/// merging, PEFT keys, sharding and the LoRA targets all follow from that record. docs/adding-a-model.md walks through
/// adding one.
/// </summary>
public abstract class ModelFamily
{
    /// <summary>Short name (llama, qwen2, gemma3, …).</summary>
    public abstract string Name { get; }

    /// <summary>The config.json model_type values this family reads.</summary>
    public abstract IReadOnlyList<string> ModelTypes { get; }

    /// <summary>config.json's architectures entry (the transformers class).</summary>
    public abstract string ArchitectureClass { get; }

    /// <summary>Whether config.json spells the attention biases as attention_bias (written back by
    /// <see cref="ModelConfig.ToJson"/>).</summary>
    internal virtual bool WritesAttentionBias => true;

    /// <summary>Reads config.json (already parsed) into a configuration; errors name the file and the field.</summary>
    internal abstract ModelConfig ReadConfig(JsonFields j, JsonObject root);

    public override string ToString() => Name;

    /// <summary>What every family reads the same way: sizes (head_dim may be absent: hidden / heads), rms_norm_eps,
    /// max_position_embeddings, tie_word_embeddings, special token ids and the RoPE of the full-attention layers.
    /// <paramref name="tieDefault"/> is the family's transformers default for tie_word_embeddings.</summary>
    private protected ModelConfig ReadCommon(JsonFields j, JsonObject root, string modelType, bool tieDefault = false, double epsDefault = 1e-6,
                                     double thetaDefault = 10_000)
    {
        var file = j.File;
        var hidden = j.Int("hidden_size", required: true, min: 1)!.Value;
        var heads = j.Int("num_attention_heads", required: true, min: 1)!.Value;
        var kvHeads = j.Int("num_key_value_heads", min: 1) ?? heads;
        var headDim = j.Int("head_dim", min: 2) ?? (hidden % heads == 0 ? hidden / heads
            : throw new ModelFormatException(file, "num_attention_heads", $"{heads} does not divide hidden_size {hidden} and there is no head_dim"));
        var maxPos = j.Int("max_position_embeddings", min: 1) ?? 2048;
        var eos = root["eos_token_id"] switch
        {
            null => Array.Empty<int>(),
            JsonArray a => a.Select((n, i) => JsonFields.AsInt(n, $"eos_token_id[{i}]", file)).ToArray(),
            var n => [JsonFields.AsInt(n, "eos_token_id", file)],
        };
        return new ModelConfig
        {
            Family = this,
            ModelType = modelType,
            VocabSize = j.Int("vocab_size", required: true, min: 1)!.Value,
            HiddenSize = hidden,
            IntermediateSize = j.Int("intermediate_size", required: true, min: 1)!.Value,
            NumHiddenLayers = j.Int("num_hidden_layers", required: true, min: 1)!.Value,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = j.Double("rms_norm_eps") ?? epsDefault,
            MaxPositionEmbeddings = maxPos,
            TieWordEmbeddings = j.Bool("tie_word_embeddings") ?? tieDefault,
            Rope = RopeReader.Read(j, root, headDim, maxPos, layerType: "full_attention", thetaDefault),
            BosTokenId = j.Int("bos_token_id"),
            EosTokenIds = eos,
            PadTokenId = j.Int("pad_token_id"),
        };
    }

    /// <summary>The activation named by <paramref name="field"/> (default <paramref name="fallback"/>) must be one of
    /// <paramref name="allowed"/>; returns its kind.</summary>
    private protected static GateActivation Activation(JsonFields j, string field, string fallback, params string[] allowed)
    {
        var act = j.String(field) ?? fallback;
        if (!allowed.Contains(act))
            throw new ModelFormatException(j.File, field, $"'{act}' is not supported (expected {string.Join(" or ", allowed.Select(a => $"'{a}'"))})");
        return act is "silu" or "swish" ? GateActivation.Silu : GateActivation.GeluTanh;
    }

    /// <summary>config.json's layer_types (transformers 5) as a sliding-layer pattern, or null when absent.</summary>
    private protected static LayerPattern? LayerTypes(JsonFields j)
    {
        var types = j.Strings("layer_types");
        if (types is null) return null;
        for (var i = 0; i < types.Length; i++)
            if (types[i] is not ("full_attention" or "sliding_attention"))
                throw new ModelFormatException(j.File, $"layer_types[{i}]", $"'{types[i]}' is not supported (full_attention or sliding_attention)");
        return new LayerPattern(Explicit: types.Select(t => t == "sliding_attention").ToArray());
    }

    /// <summary>Rejects config.json fields whose value changes the architecture in a way SlothSharp does not
    /// implement (a mixture of experts, another attention kind, vision towers).</summary>
    private protected static void RejectUnsupported(JsonFields j)
    {
        foreach (var moe in new[] { "num_experts", "num_local_experts", "n_routed_experts" })
            if (j.Node(moe) is JsonValue v && v.TryGetValue<int>(out var n) && n > 0)
                throw new ModelFormatException(j.File, moe, $"{n}: mixture-of-experts models are not supported");
        if (j.Has("vision_config")) throw new ModelFormatException(j.File, "vision_config", "vision towers are not supported (text decoders only)");
        if (j.Int("pretraining_tp") is { } tp && tp != 1)
            throw new ModelFormatException(j.File, "pretraining_tp", $"{tp} is not supported (only 1)");
    }
}
