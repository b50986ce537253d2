using SlothSharp.Autograd;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// Grouped-query attention through TorchSharp's scaled_dot_product_attention with only q and the unexpanded k and v
/// kept for backward. TorchSharp's SDPA has no <c>enable_gqa</c>, so K and V are expanded to every query head before
/// it; through ordinary autograd SDPA then keeps the expanded copies and its output for backward, [B, H, L, D] three
/// times per layer where q and the grouped k/v are [B, H, T, D] + 2 × [B, KV, L, D] (Phi-4-mini, 24 query heads over 8
/// KV heads: 12,288 values a token and layer kept against 5,120). This node keeps q, k, v as they come in and, in
/// backward, expands and runs SDPA again under autograd and differentiates that: one more attention forward per layer
/// (a few percent of a training step at 1-8B shapes) for the memory. SDPA's forward is deterministic, so the gradients
/// are those of the plain expression bit for bit.
/// </summary>
public static class GqaAttention
{
    /// <summary>q [B, H, T, D], k and v [B, KV, L, D] with H a multiple of KV (one float dtype and device); mask: SDPA's
    /// attn_mask (bool, true = may attend, or additive float) broadcastable to [B, H, T, L], or null; causal: SDPA's
    /// is_causal (only with a null mask). Returns [B, H, T, D] in the dtype, differentiable in q, k and v.</summary>
    public static Tensor Apply(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4)
            throw new ArgumentException($"q {OpChecks.Shape(q)}, k {OpChecks.Shape(k)} and v {OpChecks.Shape(v)} must be [B, H|KV, T|L, D]");
        OpChecks.FloatingSameDtype(q, nameof(q), k, nameof(k));
        OpChecks.FloatingSameDtype(q, nameof(q), v, nameof(v));
        var (b, h, d) = (q.shape[0], q.shape[1], q.shape[3]);
        var kv = k.shape[1];
        if (k.shape[0] != b || k.shape[3] != d || kv < 1 || h % kv != 0 || !v.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"k {OpChecks.Shape(k)} and v {OpChecks.Shape(v)} must be [{b}, KV, L, {d}] with {h} a multiple of KV (q {OpChecks.Shape(q)})");
        if (causal && mask is not null) throw new ArgumentException("causal attention takes no mask", nameof(mask));
        return GqaAttentionFunction.Apply(new GqaAttentionPlan(h / kv, causal), q, k, v, mask);
    }

    /// <summary>What this node computes, through ordinary autograd (the reference the tests compare with): K and V
    /// repeated per group as transformers' repeat_kv does, then SDPA.</summary>
    public static Tensor Reference(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal)
    {
        using var scope = NewDisposeScope();
        var groups = q.shape[1] / k.shape[1];
        return nn.functional.scaled_dot_product_attention(q, Expand(k, groups), Expand(v, groups), mask, 0.0, causal)
            .MoveToOuterDisposeScope();
    }

    /// <summary>[B, KV, L, D] → [B, KV·groups, L, D], each KV head serving `groups` consecutive query heads.</summary>
    internal static Tensor Expand(Tensor x, long groups)
    {
        if (groups == 1) return x.alias();
        var (b, kv, l, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return x.unsqueeze(2).expand(b, kv, groups, l, d).reshape(b, kv * groups, l, d);
    }
}

internal sealed record GqaAttentionPlan(long Groups, bool Causal);

internal sealed class GqaAttentionFunction : SlothFunction<GqaAttentionFunction, GqaAttentionPlan>
{
    public override string Name => "SlothSharp.GqaAttention";

    protected override Tensor Forward(autograd.AutogradContext ctx, GqaAttentionPlan plan, Tensor?[] inputs)
    {
        var (q, k, v, mask) = (inputs[0]!, inputs[1]!, inputs[2]!, inputs[3]);
        Tensor output;
        using (var scope = NewDisposeScope())
            output = Attend(q, k, v, mask, plan).MoveToOuterDisposeScope();
        if (Recording) ctx.save_for_backward([q, k, v, mask]);
        return output;
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, GqaAttentionPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var (q, k, v, mask) = (saved[0]!, saved[1]!, saved[2]!, saved[3]);
        using var scope = NewDisposeScope();
        using var grad = enable_grad();
        var (qd, kd, vd) = (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());
        var y = Attend(qd, kd, vd, mask, plan);
        var grads = autograd.grad([y], [qd, kd, vd], [gradOutput]);
        return [grads[0].MoveToOuterDisposeScope(), grads[1].MoveToOuterDisposeScope(), grads[2].MoveToOuterDisposeScope(), null];
    }

    private static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, GqaAttentionPlan plan) =>
        nn.functional.scaled_dot_product_attention(q, GqaAttention.Expand(k, plan.Groups), GqaAttention.Expand(v, plan.Groups),
                                                   mask, 0.0, plan.Causal);
}
