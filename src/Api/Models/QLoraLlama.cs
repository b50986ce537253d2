using static TorchSharp.torch;
using TorchSharp.Modules;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>Dimensions of a Llama-style decoder.</summary>
public sealed record QLoraLlamaConfig(int Vocab, int Hidden, int Layers, int Heads, int KvHeads, int Intermediate,
                                 double RopeTheta = 500_000, double RmsEps = 1e-5, int LoraRank = 8, double LoraAlpha = 16)
{
    public int HeadDim => Hidden / Heads;

    public void Validate()
    {
        if (Hidden % Heads != 0) throw new ArgumentException($"Hidden {Hidden} must be divisible by Heads {Heads}");
        if (Heads % KvHeads != 0) throw new ArgumentException($"Heads {Heads} must be divisible by KvHeads {KvHeads}");
        if (HeadDim % 2 != 0) throw new ArgumentException("the head dimension must be even (rotary embeddings)");
    }
}

/// <summary>
/// A Llama-style causal LM for QLoRA fine-tuning: token embedding, RMSNorm, rotary embeddings, grouped-query attention
/// (TorchSharp's scaled_dot_product_attention), SwiGLU MLP and an untied LM head. Every projection is a frozen NF4
/// <see cref="LoraLinear4bit"/> with trainable adapters; the embedding, norms and head are frozen.
/// <see cref="forward"/> returns the final hidden states [B, T, Hidden]; the loss (naive or fused) applies
/// <see cref="HeadWeight"/> [Vocab, Hidden] itself.
/// </summary>
public sealed class QLoraLlama : Module<Tensor, Tensor>
{
    private readonly QLoraLlamaConfig _cfg;
    private readonly Embedding embed_tokens;
    private readonly ModuleList<DecoderLayer> layers;
    private readonly RmsNorm norm;
    private readonly Parameter lm_head;
    private readonly Tensor _cos, _sin;

    /// <summary>Weights drawn from N(0, 0.02²) with <paramref name="seed"/> (the same seed gives the same model on
    /// any device), quantized to NF4, then moved to <paramref name="device"/> in <paramref name="dtype"/>.</summary>
    public QLoraLlama(QLoraLlamaConfig cfg, ulong seed, Device device, ScalarType dtype, int maxSeq) : base("QLoraLlama")
    {
        cfg.Validate();
        _cfg = cfg;
        var gen = new Generator(seed);
        Tensor Init(params long[] shape) => randn(shape, generator: gen) * 0.02;
        embed_tokens = Embedding(cfg.Vocab, cfg.Hidden, dtype: dtype, device: device);
        using (no_grad()) embed_tokens.weight!.copy_(Init(cfg.Vocab, cfg.Hidden));
        embed_tokens.weight!.requires_grad_(false);
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, cfg.Layers)
            .Select(i => new DecoderLayer(cfg, gen, device, dtype, $"layer{i}")).ToArray());
        norm = new RmsNorm(cfg.Hidden, cfg.RmsEps, device, dtype);
        lm_head = new Parameter(Init(cfg.Vocab, cfg.Hidden).to(dtype).to(device), requires_grad: false);
        var invFreq = 1.0 / pow(cfg.RopeTheta, arange(0, cfg.HeadDim, 2, ScalarType.Float64) / cfg.HeadDim);
        var freqs = outer(arange(maxSeq, ScalarType.Float64), invFreq);
        var emb = cat([freqs, freqs], -1);
        _cos = emb.cos().to(dtype).to(device);
        _sin = emb.sin().to(dtype).to(device);
        RegisterComponents();
    }

    public Tensor HeadWeight => lm_head;
    public QLoraLlamaConfig Config => _cfg;

    /// <summary>The trainable LoRA parameters.</summary>
    public IEnumerable<Parameter> Adapters => layers.SelectMany(l => l.Adapters);

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var t = ids.shape[1];
        var cos = _cos[..(int)t];
        var sin = _sin[..(int)t];
        var h = embed_tokens.forward(ids);
        foreach (var layer in layers) h = layer.Forward(h, cos, sin);
        return norm.forward(h).MoveToOuterDisposeScope();
    }

    private sealed class RmsNorm : Module<Tensor, Tensor>
    {
        private readonly Parameter weight;
        private readonly double _eps;

        public RmsNorm(int dim, double eps, Device device, ScalarType dtype) : base("RmsNorm")
        {
            weight = new Parameter(ones(dim, dtype, device), requires_grad: false);
            _eps = eps;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var x32 = x.to(ScalarType.Float32);
            var y = x32 * (x32.square().mean([-1], keepdim: true) + _eps).rsqrt();
            return (y.to(x.dtype) * weight).MoveToOuterDisposeScope();
        }
    }

    private sealed class DecoderLayer : Module<Tensor, Tensor>
    {
        private readonly QLoraLlamaConfig _cfg;
        private readonly RmsNorm input_layernorm, post_attention_layernorm;
        private readonly LoraLinear4bit q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;

        public DecoderLayer(QLoraLlamaConfig cfg, Generator gen, Device device, ScalarType dtype, string name) : base(name)
        {
            _cfg = cfg;
            LoraLinear4bit Proj(int outF, int inF) =>
                new(randn([outF, inF], generator: gen) * 0.02, cfg.LoraRank, cfg.LoraAlpha, gen, device);
            var kv = cfg.KvHeads * cfg.HeadDim;
            q_proj = Proj(cfg.Hidden, cfg.Hidden);
            k_proj = Proj(kv, cfg.Hidden);
            v_proj = Proj(kv, cfg.Hidden);
            o_proj = Proj(cfg.Hidden, cfg.Hidden);
            gate_proj = Proj(cfg.Intermediate, cfg.Hidden);
            up_proj = Proj(cfg.Intermediate, cfg.Hidden);
            down_proj = Proj(cfg.Hidden, cfg.Intermediate);
            input_layernorm = new RmsNorm(cfg.Hidden, cfg.RmsEps, device, dtype);
            post_attention_layernorm = new RmsNorm(cfg.Hidden, cfg.RmsEps, device, dtype);
            RegisterComponents();
        }

        public IEnumerable<Parameter> Adapters =>
            new[] { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj }.SelectMany(p => p.Adapters);

        public override Tensor forward(Tensor x) => throw new NotSupportedException("use Forward(x, cos, sin)");

        public Tensor Forward(Tensor x, Tensor cos, Tensor sin)
        {
            using var scope = NewDisposeScope();
            var (b, t) = (x.shape[0], x.shape[1]);
            var (nh, nkv, hd) = (_cfg.Heads, _cfg.KvHeads, _cfg.HeadDim);
            var h = input_layernorm.forward(x);
            var q = q_proj.forward(h).view(b, t, nh, hd).transpose(1, 2);
            var k = k_proj.forward(h).view(b, t, nkv, hd).transpose(1, 2);
            var v = v_proj.forward(h).view(b, t, nkv, hd).transpose(1, 2);
            q = Rope(q, cos, sin);
            k = Rope(k, cos, sin);
            if (nkv != nh)
            {
                k = k.repeat_interleave(nh / nkv, dim: 1);
                v = v.repeat_interleave(nh / nkv, dim: 1);
            }
            var attn = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
            x = x + o_proj.forward(attn.transpose(1, 2).reshape(b, t, nh * hd));
            var m = post_attention_layernorm.forward(x);
            x = x + down_proj.forward(nn.functional.silu(gate_proj.forward(m)) * up_proj.forward(m));
            return x.MoveToOuterDisposeScope();
        }

        private static Tensor Rope(Tensor x, Tensor cos, Tensor sin)
        {
            var half = x.shape[^1] / 2;
            var rotated = cat([x[.., .., .., (int)half..].neg(), x[.., .., .., ..(int)half]], -1);
            return x * cos + rotated * sin;
        }
    }
}
