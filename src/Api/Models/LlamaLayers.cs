using SlothSharp.Ops;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>A module holding one frozen tensor named <c>weight</c> (embedding table, RMSNorm scale, untied LM head).</summary>
internal sealed class WeightOnly : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    public WeightOnly(string name, Tensor weight) : base(name)
    {
        Weight = new Parameter(weight, requires_grad: false);
        register_parameter("weight", Weight);
    }

    public Parameter Weight { get; }

    /// <summary>Embedding lookup: ids [B, T] int64 → [B, T, H].</summary>
    public override Tensor forward(Tensor ids) =>
        Weight.index_select(0, ids.reshape(-1)).view([.. ids.shape, Weight.shape[1]]);
}

/// <summary>LlamaRMSNorm: y = weight · (x / √(mean(x²) + eps)) computed in float32, cast back to x's dtype before the
/// scale (as transformers does).</summary>
internal sealed class LlamaRmsNorm : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    private readonly Parameter _weight;
    private readonly double _eps;

    public LlamaRmsNorm(string name, Tensor weight, double eps) : base(name)
    {
        _weight = new Parameter(weight, requires_grad: false);
        register_parameter("weight", _weight);
        _eps = eps;
    }

    /// <summary><paramref name="fused"/>: SlothSharp's RMSNorm kernel (<see cref="RmsNorm"/>, same formula and
    /// roundings); otherwise the TorchSharp ops of <see cref="forward"/>.</summary>
    public Tensor Forward(Tensor x, bool fused) =>
        fused && _weight.dtype == x.dtype ? RmsNorm.Apply(x, _weight, _eps) : forward(x);

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var y = x32 * (x32.pow(2).mean([-1], keepdim: true) + _eps).rsqrt();
        return (_weight * y.to(x.dtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>SwiGLU MLP: down(silu(gate(x)) · up(x)).</summary>
internal sealed class LlamaMlp : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    public LlamaMlp(LlamaLinear gate, LlamaLinear up, LlamaLinear down) : base("mlp")
    {
        (Gate, Up, Down) = (gate, up, down);
        register_module("gate_proj", gate);
        register_module("up_proj", up);
        register_module("down_proj", down);
    }

    public LlamaLinear Gate { get; }
    public LlamaLinear Up { get; }
    public LlamaLinear Down { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return Down.forward(functional.silu(Gate.forward(x)) * Up.forward(x)).MoveToOuterDisposeScope();
    }

    /// <summary><paramref name="fused"/>: NF4+LoRA projections and the SwiGLU kernel; otherwise <see cref="forward"/>.</summary>
    public Tensor Forward(Tensor x, bool fused)
    {
        if (!fused) return forward(x);
        using var scope = NewDisposeScope();
        // SwiGLU and the down projection as one node when down is NF4: h = silu(gate)·up is recomputed in backward
        // instead of kept ([tokens, intermediate] per layer).
        return Down.ForwardSwiGlu(Gate.Forward(x, true), Up.Forward(x, true)).MoveToOuterDisposeScope();
    }
}

/// <summary>Grouped-query self-attention with rotary embeddings, through scaled_dot_product_attention.</summary>
internal sealed class LlamaAttention : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    private readonly LlamaConfig _cfg;

    public LlamaAttention(LlamaConfig cfg, LlamaLinear q, LlamaLinear k, LlamaLinear v, LlamaLinear o) : base("self_attn")
    {
        _cfg = cfg;
        (Q, K, V, O) = (q, k, v, o);
        register_module("q_proj", q);
        register_module("k_proj", k);
        register_module("v_proj", v);
        register_module("o_proj", o);
    }

    public LlamaLinear Q { get; }
    public LlamaLinear K { get; }
    public LlamaLinear V { get; }
    public LlamaLinear O { get; }

    public override Tensor forward(Tensor x) => throw new NotSupportedException("call LlamaForCausalLM.Forward");

    /// <summary>x [B, T, H]; cos/sin [T, D] in x's dtype; mask null (then causal when <paramref name="causal"/>) or
    /// bool [B, 1, T, L] (true = attend). <paramref name="fused"/>: NF4+LoRA projections and the RoPE kernel on the [B, T, heads, D] projection output (no
    /// transpose copy before it); otherwise the plain TorchSharp ops.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, bool causal, KvCache? cache, int layer, bool fused)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (x.shape[0], x.shape[1]);
        var (nh, nkv, hd) = (_cfg.NumAttentionHeads, _cfg.NumKeyValueHeads, _cfg.HeadDim);
        Tensor q, k, v;
        if (fused)
        {
            q = Ops.Rope.Apply(Q.Forward(x, true).view(b, t, nh, hd), cos, sin, Interop.SlothRopeLayout.Bthd).transpose(1, 2);
            k = Ops.Rope.Apply(K.Forward(x, true).view(b, t, nkv, hd), cos, sin, Interop.SlothRopeLayout.Bthd).transpose(1, 2);
            v = V.Forward(x, true).view(b, t, nkv, hd).transpose(1, 2);
        }
        else
        {
            q = Rope(Q.forward(x).view(b, t, nh, hd).transpose(1, 2), cos, sin);
            k = Rope(K.forward(x).view(b, t, nkv, hd).transpose(1, 2), cos, sin);
            v = V.forward(x).view(b, t, nkv, hd).transpose(1, 2);
        }
        if (cache is not null) (k, v) = cache.Append(layer, k, v);
        if (nkv != nh)
        {
            // transformers' repeat_kv: each K/V head serves nh/nkv consecutive query heads.
            var l = k.shape[2];
            k = k.unsqueeze(2).expand(b, nkv, nh / nkv, l, hd).reshape(b, nh, l, hd);
            v = v.unsqueeze(2).expand(b, nkv, nh / nkv, l, hd).reshape(b, nh, l, hd);
        }
        var attn = functional.scaled_dot_product_attention(q, k, v, mask, 0.0, mask is null && causal);
        return O.Forward(attn.transpose(1, 2).reshape(b, t, nh * hd), fused).MoveToOuterDisposeScope();
    }

    /// <summary>x·cos + rotate_half(x)·sin, rotate_half(x) = [−x₂, x₁] (the two halves of the head dimension).</summary>
    private static Tensor Rope(Tensor x, Tensor cos, Tensor sin)
    {
        var half = x.shape[^1] / 2;
        var rotated = cat([x[.., .., .., (int)half..].neg(), x[.., .., .., ..(int)half]], -1);
        return x * cos + rotated * sin;
    }
}

/// <summary>One decoder layer: x + attn(norm(x)), then + mlp(norm(·)).</summary>
internal sealed class LlamaDecoderLayer : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    public LlamaDecoderLayer(string name, LlamaAttention attn, LlamaMlp mlp, LlamaRmsNorm inputNorm, LlamaRmsNorm postNorm)
        : base(name)
    {
        (Attention, Mlp) = (attn, mlp);
        register_module("self_attn", attn);
        register_module("mlp", mlp);
        register_module("input_layernorm", inputNorm);
        register_module("post_attention_layernorm", postNorm);
        InputNorm = inputNorm;
        PostNorm = postNorm;
    }

    public LlamaAttention Attention { get; }
    public LlamaMlp Mlp { get; }
    public LlamaRmsNorm InputNorm { get; }
    public LlamaRmsNorm PostNorm { get; }

    public IEnumerable<LlamaLinear> Projections => [Attention.Q, Attention.K, Attention.V, Attention.O, Mlp.Gate, Mlp.Up, Mlp.Down];

    /// <summary>Called at the start of every computation of this layer (a forward, and the recomputation of a
    /// checkpointed layer in backward); what it returns is disposed when the layer's output is computed. FSDP-style
    /// sharding (SlothSharp.Distributed.ShardedLlama) all-gathers the layer's NF4 weights here and frees them on
    /// dispose; backward needs no weights of its own (the graph keeps the dequantized ones it uses). Null: nothing.</summary>
    internal Func<IDisposable?>? AroundCompute { get; set; }

    public override Tensor forward(Tensor x) => throw new NotSupportedException("call LlamaForCausalLM.Forward");

    /// <summary><paramref name="dropoutSeed"/>: seeds the LoRA dropout masks of this layer for this call (null: none).</summary>
    public Tensor Forward(Tensor x, LayerInputs inputs, int layer, ulong? dropoutSeed)
    {
        using var around = AroundCompute?.Invoke();
        using var scope = NewDisposeScope();
        // A CPU generator: TorchSharp 0.107 gives a CPU generator for Generator(seed, cuda) too, which CUDA rand rejects
        // (seen on the H100); masks are drawn on the CPU and copied, the same bits on every device.
        using var gen = dropoutSeed is { } s ? new Generator(s) : null;
        foreach (var p in Projections) p.DropoutGenerator = gen;
        try
        {
            var f = inputs.Fused;
            var h = x + Attention.Forward(InputNorm.Forward(x, f), inputs.Cos, inputs.Sin, inputs.Mask, inputs.Causal, inputs.Cache, layer, f);
            var y = h + Mlp.Forward(PostNorm.Forward(h, f), f);
            return y.MoveToOuterDisposeScope();
        }
        finally
        {
            foreach (var p in Projections) p.DropoutGenerator = null;
        }
    }
}

/// <summary>What every decoder layer of one forward shares: rotary tables, attention mask, cache, and whether the
/// fused kernels run (<see cref="LlamaForCausalLM.UseFusedKernels"/>).</summary>
internal sealed record LayerInputs(Tensor Cos, Tensor Sin, Tensor? Mask, bool Causal, KvCache? Cache, bool Fused);

/// <summary>
/// Rotary-embedding frequencies exactly as transformers computes them (float32 throughout, same operation order):
/// inv_freq = 1 / θ^(arange(0, D, 2) / D), then the llama3 or linear adjustment.
/// </summary>
internal static class LlamaRope
{
    public static Tensor InverseFrequencies(LlamaConfig cfg)
    {
        using var scope = NewDisposeScope();
        var dim = cfg.HeadDim;
        var exponent = arange(0, dim, 2, ScalarType.Int64).to(ScalarType.Float32) / dim;
        // Python's `scalar / tensor` is reciprocal(tensor) * scalar in PyTorch; written that way here.
        var invFreq = tensor((float)cfg.RopeTheta, ScalarType.Float32).pow(exponent).reciprocal();
        if (cfg.RopeScaling is { Type: "linear" } lin) invFreq = invFreq / lin.Factor;
        else if (cfg.RopeScaling is { Type: "llama3" } s)
        {
            double oldContext = s.OriginalMaxPositionEmbeddings;
            var lowFreqWavelen = oldContext / s.LowFreqFactor;
            var highFreqWavelen = oldContext / s.HighFreqFactor;
            var wavelen = invFreq.reciprocal() * (2 * Math.PI);
            // Long wavelengths are divided by the factor, short ones kept, the band between blended smoothly.
            var llama = where(wavelen > lowFreqWavelen, invFreq / s.Factor, invFreq);
            var smooth = (wavelen.reciprocal() * oldContext - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
            var smoothed = (1 - smooth) * llama / s.Factor + smooth * llama;
            var medium = (wavelen < highFreqWavelen).logical_not() & (wavelen > lowFreqWavelen).logical_not();
            invFreq = where(medium, smoothed, llama);
        }
        return invFreq.MoveToOuterDisposeScope();
    }

    /// <summary>cos and sin [T, D] for positions start … start+T−1, computed in float32 and cast to dtype.</summary>
    public static (Tensor Cos, Tensor Sin) Tables(Tensor invFreq, long start, long length, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var positions = arange(start, start + length, 1, ScalarType.Float32, invFreq.device);
        var freqs = positions.unsqueeze(1) * invFreq.unsqueeze(0);
        var emb = cat([freqs, freqs], -1);
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
    }
}
