using System.Text.Json.Nodes;

namespace SlothSharp.Models.Families;

/// <summary>
/// Gemma 2: RMSNorm as x̂·(1 + w) in float32, four norms per layer (sandwich), GeGLU with the tanh GELU
/// (hidden_activation gelu_pytorch_tanh), embeddings × √hidden, attention scale query_pre_attn_scalar^-½, attention
/// and final logit soft-capping, a sliding window on alternate layers (layer_types, else even layers), tied embeddings.
/// </summary>
public class Gemma2Family : ModelFamily
{
    public override string Name => "gemma2";
    public override IReadOnlyList<string> ModelTypes { get; } = ["gemma2"];
    public override string ArchitectureClass => "Gemma2ForCausalLM";

    internal override ModelConfig ReadConfig(JsonFields j, JsonObject root)
    {
        RejectUnsupported(j);
        var c = GemmaCommon(j, root, Name);
        return c with
        {
            AttentionSoftcap = j.Double("attn_logit_softcapping"),
            FinalLogitSoftcap = j.Double("final_logit_softcapping"),
            SlidingLayers = LayerTypes(j) ?? new LayerPattern(Period: 2),
        };
    }

    /// <summary>What Gemma 2 and 3 share.</summary>
    private protected ModelConfig GemmaCommon(JsonFields j, JsonObject root, string modelType)
    {
        var bias = j.Bool("attention_bias") ?? false;
        var c = ReadCommon(j, root, modelType, tieDefault: true);
        var scalar = j.Double("query_pre_attn_scalar") ?? 256;
        if (!(scalar > 0)) throw new ModelFormatException(j.File, "query_pre_attn_scalar", $"{scalar} must be > 0");
        // transformers' Gemma MLP uses hidden_activation; very old configs only have hidden_act.
        var field = j.Has("hidden_activation") ? "hidden_activation" : "hidden_act";
        return c with
        {
            Activation = Activation(j, field, "gelu_pytorch_tanh", "gelu_pytorch_tanh"),
            QkvBias = bias,
            OutputBias = bias,
            UnitOffsetNorms = true,
            SandwichNorms = true,
            ScaleEmbeddings = true,
            QueryPreAttnScalar = scalar,
            SlidingWindow = j.Int("sliding_window", min: 1),
        };
    }
}

/// <summary>Gemma 3 (text): Gemma 2 without soft-caps (unless set), plus q_norm/k_norm, a sliding window on all but every
/// sliding_window_pattern-th layer (layer_types in transformers 5), and a local RoPE base for the sliding layers
/// (rope_local_base_freq; transformers 5: rope_parameters.sliding_attention) beside the global one (which may be
/// scaled). The multimodal model_type "gemma3" (a vision tower and language_model.* weights) is refused by name.</summary>
public sealed class Gemma3Family : Gemma2Family
{
    public override string Name => "gemma3";
    public override IReadOnlyList<string> ModelTypes { get; } = ["gemma3_text", "gemma3"];
    public override string ArchitectureClass => "Gemma3ForCausalLM";

    internal override ModelConfig ReadConfig(JsonFields j, JsonObject root)
    {
        if (j.String("model_type") == "gemma3")
            throw new ModelFormatException(j.File, "model_type",
                "'gemma3' is the multimodal Gemma 3 (vision tower, language_model.* weights); SlothSharp runs the text model " +
                "(model_type 'gemma3_text', Gemma3ForCausalLM, as the 1B checkpoint and text-only exports have)");
        RejectUnsupported(j);
        var c = GemmaCommon(j, root, Name);
        var pattern = j.Int("sliding_window_pattern", min: 1) ?? j.Int("_sliding_window_pattern", min: 1) ?? 6;
        RopeSpec local;
        if (root["rope_parameters"] is JsonObject rp && rp["sliding_attention"] is JsonObject)
            local = RopeReader.Read(j, root, c.HeadDim, c.MaxPositionEmbeddings, "sliding_attention", 10_000);
        else
            local = RopeSpec.Default(j.Double("rope_local_base_freq") ?? 10_000, c.Rope.PartialRotaryFactor);
        return c with
        {
            QkNorm = true,
            AttentionSoftcap = j.Double("attn_logit_softcapping"),
            FinalLogitSoftcap = j.Double("final_logit_softcapping"),
            SlidingLayers = LayerTypes(j) ?? new LayerPattern(Period: pattern),
            LocalRope = local,
        };
    }
}
