using SlothSharp.Ops;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>
/// How the decoder's building blocks compute: the plain TorchSharp ops (<see cref="Reference"/>, the path tests compare
/// against) or SlothSharp's fused kernels (<see cref="Fused"/>: RMSNorm, RoPE and gated-activation kernels, and each NF4
/// projection with its LoRA adapter as one autograd node that dequantizes its weight again in backward instead of
/// keeping it). Chosen once for a whole model by <see cref="CausalLM.UseFusedKernels"/>, which puts the choice into
/// every module (as Liger's apply_liger_kernel_* patches a model at load), so no forward takes a flag. Both compute the
/// same function; they differ in memory, speed and rounding order.
/// </summary>
internal abstract class DecoderKernels
{
    public static DecoderKernels Reference { get; } = new ReferenceKernels();
    public static DecoderKernels Fused { get; } = new FusedKernels(recomputeAttention: false);

    /// <summary>The fused set with attention recomputed in backward (<see cref="GqaAttention"/>): keeps q and the
    /// grouped k/v instead of SDPA's expanded copies and output (<see cref="CausalLM.RecomputeAttention"/>).</summary>
    public static DecoderKernels FusedRecomputingAttention { get; } = new FusedKernels(recomputeAttention: true);

    /// <summary>x [.., in] → [.., out] through the projection and its adapter.</summary>
    public abstract Tensor Linear(Projection p, Tensor x);

    /// <summary>down(act(gate) · up): gate, up [.., intermediate] → [.., out].</summary>
    public abstract Tensor GatedLinear(Projection down, Tensor gate, Tensor up, GateActivation activation);

    /// <summary>RMSNorm over the last dimension: Llama's w · cast(x̂) or, with <paramref name="unitOffset"/>, Gemma's
    /// cast(x̂ · (1 + w)) computed in float32.</summary>
    public abstract Tensor Norm(Tensor x, Tensor weight, double eps, bool unitOffset);

    /// <summary>RoPE on x [B, T, heads, D] (contiguous), cos/sin [T, rotary] in x's dtype: the first `rotary` features of
    /// each head are rotated (rotate_half), the rest pass through. Returns [B, T, heads, D].</summary>
    public abstract Tensor Rope(Tensor x, Tensor cos, Tensor sin);

    /// <summary>Attention through SDPA: q [B, H, T, D], k/v [B, KV, L, D] (grouped: each KV head serves H/KV consecutive
    /// query heads, as transformers' repeat_kv), mask as SDPA's attn_mask or null, causal as its is_causal (with a null
    /// mask only). Returns [B, H, T, D].</summary>
    public abstract Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal);

    /// <summary>Gemma 2's soft-capped attention: q [B, H, T, D], k/v [B, H, L, D] (GQA expanded), allowed bool
    /// [B|1, H|1, T, L] or null; cap·tanh(q·kᵀ·scale / cap), masked, softmax in float32, rounded, times v.</summary>
    public abstract Tensor SoftcapAttention(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap);

    /// <summary>act(gate) · up, each rounded to the dtype as PyTorch rounds them.</summary>
    public static Tensor Activate(Tensor gate, Tensor up, GateActivation activation) => activation switch
    {
        GateActivation.Silu => functional.silu(gate) * up,
        _ => functional.gelu(gate, TorchSharp.Modules.GELU.Approximate.tanh) * up,
    };

    private sealed class ReferenceKernels : DecoderKernels
    {
        public override Tensor Linear(Projection p, Tensor x) => p.ReferenceForward(x);

        public override Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal) => GqaAttention.Reference(q, k, v, mask, causal);

        public override Tensor GatedLinear(Projection down, Tensor gate, Tensor up, GateActivation activation)
        {
            using var scope = NewDisposeScope();
            return down.ReferenceForward(Activate(gate, up, activation)).MoveToOuterDisposeScope();
        }

        public override Tensor Norm(Tensor x, Tensor weight, double eps, bool unitOffset)
        {
            using var scope = NewDisposeScope();
            var x32 = x.to(ScalarType.Float32);
            var y = x32 * (x32.pow(2).mean([-1], keepdim: true) + eps).rsqrt();
            var result = unitOffset
                ? (y * (weight.to(ScalarType.Float32) + 1.0)).to(x.dtype)   // Gemma: the scale in float32, one cast
                : weight * y.to(x.dtype);                                    // Llama: cast, then the scale
            return result.MoveToOuterDisposeScope();
        }

        public override Tensor SoftcapAttention(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap)
        {
            // transformers' eager path: every [B, H, T, L] intermediate is kept for backward.
            using var scope = NewDisposeScope();
            var scores = q.matmul(k.transpose(2, 3)) * scale;
            scores = (scores / cap).tanh() * cap;
            if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
            return scores.softmax(-1, ScalarType.Float32).to(q.dtype).matmul(v).MoveToOuterDisposeScope();
        }

        public override Tensor Rope(Tensor x, Tensor cos, Tensor sin)
        {
            using var scope = NewDisposeScope();
            var d = x.shape[^1];
            var rd = cos.shape[^1];
            var c = cos.view(1, cos.shape[0], 1, rd);
            var s = sin.view(1, sin.shape[0], 1, rd);
            var rot = rd == d ? x : x.narrow(-1, 0, rd);
            var half = rd / 2;
            var rotated = cat([rot.narrow(-1, half, half).neg(), rot.narrow(-1, 0, half)], -1);
            var y = rot * c + rotated * s;
            if (rd != d) y = cat([y, x.narrow(-1, rd, d - rd)], -1);
            return y.MoveToOuterDisposeScope();
        }
    }

    private sealed class FusedKernels(bool recomputeAttention) : DecoderKernels
    {
        public override Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal) =>
            recomputeAttention && is_grad_enabled() && (q.requires_grad || k.requires_grad || v.requires_grad)
                ? GqaAttention.Apply(q, k, v, mask, causal)
                : GqaAttention.Reference(q, k, v, mask, causal);

        public override Tensor Linear(Projection p, Tensor x)
        {
            if (p.Nf4 is not { } nf4) return p.ReferenceForward(x);
            using var keep = p.Lora?.KeepMask(x.shape, x.device, p.training);
            return Nf4LoraLinear.Apply(x, nf4, p.Bias, p.Lora?.A.weight, p.Lora?.B.weight, p.Lora?.Scale ?? 1.0, keep, p.Lora?.Dropout ?? 0);
        }

        public override Tensor GatedLinear(Projection down, Tensor gate, Tensor up, GateActivation activation)
        {
            // The activation and the down projection as one node when down is NF4: act(gate)·up is recomputed in
            // backward instead of kept ([tokens, intermediate] per layer).
            if (down.Nf4 is not { } nf4)
            {
                using var scope = NewDisposeScope();
                return Linear(down, SwiGlu.Apply(gate.contiguous(), up.contiguous(), activation)).MoveToOuterDisposeScope();
            }
            var l = down.Lora;
            using var keep = l?.KeepMask(gate.shape, gate.device, down.training);
            return SwiGluNf4LoraLinear.Apply(gate.contiguous(), up.contiguous(), nf4, down.Bias, l?.A.weight, l?.B.weight, l?.Scale ?? 1.0, keep,
                l?.Dropout ?? 0, activation);
        }

        public override Tensor Norm(Tensor x, Tensor weight, double eps, bool unitOffset) =>
            weight.dtype == x.dtype ? RmsNorm.Apply(x.contiguous(), weight, eps, unitOffset) : Reference.Norm(x, weight, eps, unitOffset);

        public override Tensor SoftcapAttention(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap) =>
            Ops.SoftcapAttention.Apply(q, k, v, allowed, scale, cap);

        public override Tensor Rope(Tensor x, Tensor cos, Tensor sin) =>
            Ops.Rope.Apply(x.contiguous(), cos, sin, Interop.SlothRopeLayout.Bthd, cos.shape[^1] == x.shape[^1] ? null : (int)cos.shape[^1]);
    }
}
