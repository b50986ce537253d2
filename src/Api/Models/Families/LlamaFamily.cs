using System.Text.Json.Nodes;

namespace SlothSharp.Models.Families;

/// <summary>Llama 2, 3, 3.1, 3.2 (the shared decoder as it is): RMSNorm, SwiGLU, RoPE (default, linear, llama3, yarn),
/// attention_bias on q/k/v/o, mlp_bias.</summary>
public class LlamaFamily : ModelFamily
{
    public override string Name => "llama";
    public override IReadOnlyList<string> ModelTypes { get; } = ["llama"];
    public override string ArchitectureClass => "LlamaForCausalLM";

    internal override ModelConfig ReadConfig(JsonFields j, JsonObject root)
    {
        RejectUnsupported(j);
        var bias = j.Bool("attention_bias") ?? false;
        return ReadCommon(j, root, Name) with
        {
            Activation = Activation(j, "hidden_act", "silu", "silu"),
            QkvBias = bias,
            OutputBias = bias,
            MlpBias = j.Bool("mlp_bias") ?? false,
        };
    }
}

/// <summary>Mistral: Llama without biases, with a sliding window (sliding_window, every layer; null: none).</summary>
public sealed class MistralFamily : LlamaFamily
{
    public override string Name => "mistral";
    public override IReadOnlyList<string> ModelTypes { get; } = ["mistral"];
    public override string ArchitectureClass => "MistralForCausalLM";
    internal override bool WritesAttentionBias => false;

    internal override ModelConfig ReadConfig(JsonFields j, JsonObject root)
    {
        RejectUnsupported(j);
        return ReadCommon(j, root, Name) with
        {
            Activation = Activation(j, "hidden_act", "silu", "silu"),
            SlidingWindow = j.Int("sliding_window"),
            SlidingLayers = LayerTypes(j) ?? LayerPattern.All,
        };
    }
}
