using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>The fused kernels for a sharded model: everything fused (<paramref name="fused"/>: the model's fused set,
/// with the recomputations its options chose before sharding), except an NF4 projection whose backward would run
/// after its layer's gathered weights are freed (a training forward without gradient checkpointing), which takes the
/// plain path whose graph keeps the dequantized weight (see <see cref="ShardedCausalLM"/>).</summary>
internal sealed class ShardedKernels(CausalLM model, DecoderKernels fused) : DecoderKernels
{
    private bool KeepsWeightsForBackward => is_grad_enabled() && !model.GradientCheckpointing;

    public override Tensor Linear(Projection p, Tensor x) =>
        KeepsWeightsForBackward ? Reference.Linear(p, x) : fused.Linear(p, x);

    public override Tensor Linear(Projection p, NormedInput x) =>
        KeepsWeightsForBackward ? Reference.Linear(p, x.Value) : fused.Linear(p, x);

    // The recomputed norm needs only the norm's input and weight, which stay whole on every rank.
    public override NormedInput ProjectionNorm(Tensor x, Tensor weight, double eps, bool unitOffset) =>
        fused.ProjectionNorm(x, weight, eps, unitOffset);

    public override Tensor GatedLinear(Projection down, Tensor gate, Tensor up, GateActivation activation) =>
        KeepsWeightsForBackward ? Reference.GatedLinear(down, gate, up, activation) : fused.GatedLinear(down, gate, up, activation);

    public override Tensor OutputProjection(Projection o, Tensor heads) =>
        KeepsWeightsForBackward ? base.OutputProjection(o, heads) : fused.OutputProjection(o, heads);

    public override Tensor GatedLinearPacked(Projection down, Tensor gateUp, GateActivation activation) =>
        KeepsWeightsForBackward ? Reference.GatedLinearPacked(down, gateUp, activation) : fused.GatedLinearPacked(down, gateUp, activation);

    public override Tensor Norm(Tensor x, Tensor weight, double eps, bool unitOffset) => fused.Norm(x, weight, eps, unitOffset);

    public override Tensor Rope(Tensor x, Tensor cos, Tensor sin) => fused.Rope(x, cos, sin);

    public override Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal) => fused.Attention(q, k, v, mask, causal);

    public override Tensor SoftcapAttention(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, SoftcapSpanCache? spans = null) =>
        fused.SoftcapAttention(q, k, v, allowed, scale, cap, spans);
}
