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

    // One shared, stateless instance per combination of the fused set's recomputations, indexed by FusedWith: a model
    // installs one of them, so that a module's kernels are still a plain reference comparison (CausalLM checks that a
    // sharded model's own set is not replaced).
    private static readonly DecoderKernels[] FusedSets =
        [.. Enumerable.Range(0, 8).Select(i => new FusedKernels((i & 1) != 0, (i & 2) != 0, (i & 4) != 0))];

    /// <summary>The fused set keeping what its nodes need for backward (no recomputation beyond the fused nodes' own).</summary>
    public static DecoderKernels Fused => FusedSets[0];

    /// <summary>The fused set that, in training, recomputes attention in backward (<see cref="GqaAttention"/>: keeps q
    /// and the grouped k/v instead of SDPA's expanded copies and output; <see cref="CausalLM.RecomputeAttention"/>)
    /// and/or the RMSNorm outputs that feed projections (keeps the norms' inputs, which their nodes keep anyway, instead
    /// of their outputs; <see cref="CausalLM.RecomputeNorms"/>);
    /// <paramref name="softcapFlash"/>: soft-capped attention through the one-pass kernels where they run (CUDA, bf16/f16,
    /// sm_80+), else the blocks (<see cref="CausalLM.SoftcapAttentionMethod"/>).</summary>
    public static DecoderKernels FusedWith(bool recomputeAttention, bool recomputeNorms, bool softcapFlash = false) =>
        FusedSets[(recomputeAttention ? 1 : 0) + (recomputeNorms ? 2 : 0) + (softcapFlash ? 4 : 0)];

    /// <summary>Whether <paramref name="kernels"/> is one of the one-device fused sets (<see cref="FusedWith"/>).</summary>
    public static bool IsFusedSet(DecoderKernels kernels) => Array.IndexOf(FusedSets, kernels) >= 0;

    /// <summary>x [.., in] → [.., out] through the projection and its adapter.</summary>
    public abstract Tensor Linear(Projection p, Tensor x);

    /// <summary><see cref="Linear(Projection, Tensor)"/> of a norm output: the same values and gradients; a set that
    /// recomputes norms keeps the norm's input instead of x where the projection needs x in backward.</summary>
    public virtual Tensor Linear(Projection p, NormedInput x) => Linear(p, x.Value);

    /// <summary>The o projection of attention's output heads [B, H, T, D] → [B, T, out] (the heads laid side by side).</summary>
    public virtual Tensor OutputProjection(Projection o, Tensor heads)
    {
        using var scope = NewDisposeScope();
        var (b, h, t, d) = (heads.shape[0], heads.shape[1], heads.shape[2], heads.shape[3]);
        return o.forward(heads.transpose(1, 2).reshape(b, t, h * d)).MoveToOuterDisposeScope();
    }

    /// <summary>down(act(gate) · up): gate, up [.., intermediate] → [.., out].</summary>
    public abstract Tensor GatedLinear(Projection down, Tensor gate, Tensor up, GateActivation activation);

    /// <summary><see cref="GatedLinear"/> of a fused gate_up_proj's output: gateUp [.., 2 × intermediate], gate half then
    /// up half. Here: split (one cat in backward) and the two-tensor form; the fused set reads the halves in place.</summary>
    public virtual Tensor GatedLinearPacked(Projection down, Tensor gateUp, GateActivation activation)
    {
        using var scope = NewDisposeScope();
        var half = gateUp.shape[^1] / 2;
        var halves = gateUp.split([half, half], -1);
        return GatedLinear(down, halves[0], halves[1], activation).MoveToOuterDisposeScope();
    }

    /// <summary>RMSNorm over the last dimension: Llama's w · cast(x̂) or, with <paramref name="unitOffset"/>, Gemma's
    /// cast(x̂ · (1 + w)) computed in float32.</summary>
    public abstract Tensor Norm(Tensor x, Tensor weight, double eps, bool unitOffset);

    /// <summary><see cref="Norm"/> for a norm whose output feeds only projections (a decoder layer's input and pre-MLP
    /// norms), which take it through <see cref="Linear(Projection, NormedInput)"/>: the output, and in a set that
    /// recomputes norms, how to make it again.</summary>
    public virtual NormedInput ProjectionNorm(Tensor x, Tensor weight, double eps, bool unitOffset) =>
        new(Norm(x, weight, eps, unitOffset), null);

    /// <summary>RoPE on x [B, T, heads, D] (contiguous), cos/sin [T, rotary] in x's dtype: the first `rotary` features of
    /// each head are rotated (rotate_half), the rest pass through. Returns [B, T, heads, D].</summary>
    public abstract Tensor Rope(Tensor x, Tensor cos, Tensor sin);

    /// <summary>Attention through SDPA: q [B, H, T, D], k/v [B, KV, L, D] (grouped: each KV head serves H/KV consecutive
    /// query heads, as transformers' repeat_kv), mask as SDPA's attn_mask or null, causal as its is_causal (with a null
    /// mask only). Returns [B, H, T, D].</summary>
    public abstract Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal);

    /// <summary>Gemma 2's soft-capped attention: q [B, H, T, D], k/v [B, KV, L, D] (grouped as in
    /// <see cref="Attention"/>), allowed bool [B|1, H|1, T, L] or null; cap·tanh(q·kᵀ·scale / cap), masked, softmax in
    /// float32, rounded, times v. <paramref name="spans"/>: the key spans of <paramref name="allowed"/> shared by the
    /// layers (or null: computed here).</summary>
    public abstract Tensor SoftcapAttention(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, SoftcapSpanCache? spans = null);

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

        public override Tensor SoftcapAttention(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, SoftcapSpanCache? spans = null)
        {
            // transformers' eager path: K and V expanded to every query head (repeat_kv), every [B, H, T, L]
            // intermediate kept for backward.
            using var scope = NewDisposeScope();
            var groups = q.shape[1] / k.shape[1];
            (k, v) = (GqaAttention.Expand(k, groups), GqaAttention.Expand(v, groups));
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

    private sealed class FusedKernels(bool recomputeAttention, bool recomputeNorms, bool softcapFlash) : DecoderKernels
    {
        public override Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal) =>
            recomputeAttention && is_grad_enabled() && (q.requires_grad || k.requires_grad || v.requires_grad)
                ? GqaAttention.Apply(q, k, v, mask, causal)
                : GqaAttention.Reference(q, k, v, mask, causal);

        public override Tensor Linear(Projection p, Tensor x) => Project(p, x, null);

        // The o projection keeps attention's output heads, which SDPA's node keeps for its own backward, instead of its
        // [B, T, H·D] copy, and makes the copy again in backward for dA (Phi-4-mini at 8 × 1,024 tokens: 50 MB a layer,
        // for one copy of it in backward). Not with RecomputeAttention: its node keeps no output, so keeping the heads
        // would cost what the copy does and add the copy in backward.
        public override Tensor OutputProjection(Projection o, Tensor heads)
        {
            if (recomputeAttention || !is_grad_enabled() || o.Nf4 is not { } nf4 || o.Lora is not { } l) return base.OutputProjection(o, heads);
            using var scope = NewDisposeScope();
            var (b, h, t, d) = (heads.shape[0], heads.shape[1], heads.shape[2], heads.shape[3]);
            var x = heads.transpose(1, 2).reshape(b, t, h * d);
            using var keep = l.KeepMask(x.shape, x.device, o.training);
            return Nf4LoraLinear.ApplyToHeadsOutput(x, heads, nf4, o.Bias, l.A.weight, l.B.weight, l.Scale, keep, l.Dropout).MoveToOuterDisposeScope();
        }

        // An NF4 projection of a norm output it can make again keeps the norm's input (already kept by the norm's node)
        // instead of x: tokens × hidden × dtype size per norm and layer. Its backward then runs the norm's forward kernel
        // once more (each of Llama's q/k/v does, separately: a cheap, memory-bound pass next to the projections).
        public override Tensor Linear(Projection p, NormedInput x) => Project(p, x.Value, x.Recipe);

        private static Tensor Project(Projection p, Tensor x, RmsNormRecipe? norm)
        {
            if (p.Nf4 is not { } nf4) return p.ReferenceForward(x);
            var l = p.Lora;
            using var keep = l?.KeepMask(x.shape, x.device, p.training);
            return norm is null
                ? Nf4LoraLinear.Apply(x, nf4, p.Bias, l?.A.weight, l?.B.weight, l?.Scale ?? 1.0, keep, l?.Dropout ?? 0)
                : Nf4LoraLinear.ApplyToNormOutput(x, norm, nf4, p.Bias, l?.A.weight, l?.B.weight, l?.Scale ?? 1.0, keep, l?.Dropout ?? 0);
        }

        public override NormedInput ProjectionNorm(Tensor x, Tensor weight, double eps, bool unitOffset)
        {
            // Only where a graph is recorded (nothing is kept for inference) and the fused kernel runs: the recipe
            // makes the output again with that kernel, so it must be the one that made it.
            if (!recomputeNorms || !is_grad_enabled() || weight.dtype != x.dtype) return base.ProjectionNorm(x, weight, eps, unitOffset);
            // The norm's node keeps this very tensor (its input as given); the projections keep the same one. Where the
            // norm is not recorded (layer 0's input norm under a frozen embedding) they keep it alone: the size of x, so
            // never more than without the option.
            var input = x.contiguous();
            return new NormedInput(RmsNorm.Apply(input, weight, eps, unitOffset), new RmsNormRecipe(input, weight, eps, unitOffset));
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

        public override Tensor GatedLinearPacked(Projection down, Tensor gateUp, GateActivation activation)
        {
            // With an NF4 down projection the activation reads gate and up where the fused projection wrote them, and
            // its backward writes one packed gradient: no split copies, no join (about 1 ms per layer at Phi-4-mini's
            // shape, 8 × 1024 tokens, measured by Nsight Compute in round 15).
            if (down.Nf4 is not { } nf4) return base.GatedLinearPacked(down, gateUp, activation);
            var l = down.Lora;
            var half = gateUp.shape[^1] / 2;
            using var keep = l?.KeepMask([.. gateUp.shape[..^1], half], gateUp.device, down.training);
            return SwiGluNf4LoraLinear.ApplyPacked(gateUp.contiguous(), nf4, down.Bias, l?.A.weight, l?.B.weight, l?.Scale ?? 1.0, keep,
                l?.Dropout ?? 0, activation);
        }

        public override Tensor Norm(Tensor x, Tensor weight, double eps, bool unitOffset) =>
            weight.dtype == x.dtype ? RmsNorm.Apply(x.contiguous(), weight, eps, unitOffset) : Reference.Norm(x, weight, eps, unitOffset);

        // Auto: the blocks (faster than the first one-pass kernels on the H100); the one-pass kernels on CUDA where they
        // run when the model asks for them (the CPU twin is a test oracle, not a fast path).
        public override Tensor SoftcapAttention(Tensor q, Tensor k, Tensor v, Tensor? allowed, double scale, double cap, SoftcapSpanCache? spans = null) =>
            Ops.SoftcapAttention.Apply(q, k, v, allowed, scale, cap,
                softcapFlash && q.device_type == TorchSharp.DeviceType.CUDA && Ops.SoftcapAttention.FlashSupported(q, k, v)
                    ? SoftcapAttentionMethod.Flash
                    : SoftcapAttentionMethod.Auto, spans);

        public override Tensor Rope(Tensor x, Tensor cos, Tensor sin) =>
            Ops.Rope.Apply(x.contiguous(), cos, sin, Interop.SlothRopeLayout.Bthd, cos.shape[^1] == x.shape[^1] ? null : (int)cos.shape[^1]);
    }
}
