using System.Text.Json.Nodes;

namespace SlothSharp.Models.Families;

/// <summary>Qwen2 / Qwen2.5: Llama with biases on q/k/v (never on o) and an optional sliding window on the layers from
/// max_window_layers on (use_sliding_window; transformers 5 lists them in layer_types).</summary>
public class Qwen2Family : ModelFamily
{
    public override string Name => "qwen2";
    public override IReadOnlyList<string> ModelTypes { get; } = ["qwen2"];
    public override string ArchitectureClass => "Qwen2ForCausalLM";
    internal override bool WritesAttentionBias => false;

    internal override ModelConfig ReadConfig(JsonFields j, JsonObject root)
    {
        RejectUnsupported(j);
        return ReadCommon(j, root, Name) with
        {
            Activation = Activation(j, "hidden_act", "silu", "silu"),
            QkvBias = true,
            SlidingWindow = Window(j),
            SlidingLayers = Layers(j),
        };
    }

    /// <summary>The window exists only with use_sliding_window (transformers sets sliding_window to None otherwise).</summary>
    private protected static int? Window(JsonFields j) => j.Bool("use_sliding_window") == true ? j.Int("sliding_window", min: 1) : null;

    private protected static LayerPattern Layers(JsonFields j) =>
        LayerTypes(j) ?? new LayerPattern(FromLayer: j.Int("max_window_layers", min: 0) ?? 28);
}

/// <summary>Qwen3: Qwen2 with per-head RMSNorm on queries and keys before RoPE (q_norm, k_norm), an explicit head_dim
/// (heads × head_dim may differ from hidden_size) and attention_bias (default false) on q/k/v/o.</summary>
public sealed class Qwen3Family : Qwen2Family
{
    public override string Name => "qwen3";
    public override IReadOnlyList<string> ModelTypes { get; } = ["qwen3"];
    public override string ArchitectureClass => "Qwen3ForCausalLM";
    internal override bool WritesAttentionBias => true;

    internal override ModelConfig ReadConfig(JsonFields j, JsonObject root)
    {
        RejectUnsupported(j);
        var bias = j.Bool("attention_bias") ?? false;
        return ReadCommon(j, root, Name) with
        {
            Activation = Activation(j, "hidden_act", "silu", "silu"),
            QkvBias = bias,
            OutputBias = bias,
            QkNorm = true,
            SlidingWindow = Window(j),
            SlidingLayers = Layers(j),
        };
    }
}
