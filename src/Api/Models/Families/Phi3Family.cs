using System.Text.Json.Nodes;

namespace SlothSharp.Models.Families;

/// <summary>Phi-3, Phi-3.5, Phi-4 (model_type phi3): fused qkv_proj and gate_up_proj (LoRA on those module names, as
/// PEFT does), partial rotary embeddings (partial_rotary_factor), longrope scaling (short/long factors against
/// original_max_position_embeddings) and a sliding window on every layer; no biases.</summary>
public sealed class Phi3Family : ModelFamily
{
    public override string Name => "phi3";
    public override IReadOnlyList<string> ModelTypes { get; } = ["phi3"];
    public override string ArchitectureClass => "Phi3ForCausalLM";
    internal override bool WritesAttentionBias => false;

    internal override ModelConfig ReadConfig(JsonFields j, JsonObject root)
    {
        RejectUnsupported(j);
        return ReadCommon(j, root, Name, epsDefault: 1e-5) with
        {
            Activation = Activation(j, "hidden_act", "silu", "silu"),
            FusedQkv = true,
            FusedGateUp = true,
            SlidingWindow = j.Int("sliding_window", min: 1),
            SlidingLayers = LayerTypes(j) ?? LayerPattern.All,
        };
    }
}
