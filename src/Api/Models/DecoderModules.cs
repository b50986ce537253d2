using SlothSharp.Ops;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>A module holding one frozen tensor named <c>weight</c> (embedding table, untied LM head).</summary>
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

/// <summary>An RMSNorm with a frozen weight: Llama's w · cast(x̂) or Gemma's cast(x̂ · (1 + w)) (see
/// <see cref="DecoderKernels.Norm"/>), over the last dimension (hidden, or head_dim for Q/K norms).</summary>
internal sealed class RmsNormModule : Module<Tensor, Tensor>
{
    /// <summary>Children are registered explicitly under Hugging Face names.</summary>
    protected override void RegisterComponents() { }

    public RmsNormModule(string name, Tensor weight, double eps, bool unitOffset) : base(name)
    {
        Weight = new Parameter(weight, requires_grad: false);
        register_parameter("weight", Weight);
        Eps = eps;
        UnitOffset = unitOffset;
    }

    public Parameter Weight { get; }
    public double Eps { get; }
    public bool UnitOffset { get; }
    internal DecoderKernels Kernels { get; set; } = DecoderKernels.Reference;

    public override Tensor forward(Tensor x) => Kernels.Norm(x, Weight, Eps, UnitOffset);

    /// <summary>The norm of a decoder layer's input or of its pre-MLP stream, for the projections that consume it
    /// (see <see cref="DecoderKernels.ProjectionNorm"/>).</summary>
    public NormedInput ForProjections(Tensor x) => Kernels.ProjectionNorm(x, Weight, Eps, UnitOffset);
}

/// <summary>The gated MLP: down(act(gate(x)) · up(x)), gate and up as two projections or one fused gate_up_proj.</summary>
internal sealed class GatedMlp : Module<Tensor, Tensor>
{
    protected override void RegisterComponents() { }

    private readonly GateActivation _activation;

    public GatedMlp(IReadOnlyList<Projection> projections, GateActivation activation) : base("mlp")
    {
        foreach (var p in projections) register_module(p.GetName(), p);
        Projections = projections;
        Down = projections[^1];
        _activation = activation;
    }

    public IReadOnlyList<Projection> Projections { get; }
    public Projection Down { get; }

    public override Tensor forward(Tensor x) => Forward(new NormedInput(x, null));

    /// <summary>x [.., H], the pre-MLP norm's output → [.., H].</summary>
    public Tensor Forward(NormedInput x)
    {
        using var scope = NewDisposeScope();
        // A fused gate_up_proj's output goes to the down projection whole: the kernels split it (see
        // DecoderKernels.GatedLinearPacked), or read its halves in place.
        if (Projections.Count == 2)
            return Down.ForwardGatedPacked(Projections[0].Forward(x), _activation).MoveToOuterDisposeScope();
        return Down.ForwardGated(Projections[0].Forward(x), Projections[1].Forward(x), _activation).MoveToOuterDisposeScope();
    }
}

/// <summary>Grouped-query self-attention: projections (q/k/v/o or qkv/o), optional per-head Q/K norms, RoPE (the
/// layer's kind), the KV cache, then scaled_dot_product_attention — or, with attention soft-capping, the explicit
/// scores (SDPA has no soft-cap).</summary>
internal sealed class SelfAttention : Module<Tensor, Tensor>
{
    protected override void RegisterComponents() { }

    private readonly ModelConfig _cfg;
    private readonly int _layer;

    public SelfAttention(ModelConfig cfg, int layer, IReadOnlyList<Projection> projections, RmsNormModule? qNorm, RmsNormModule? kNorm)
        : base("self_attn")
    {
        _cfg = cfg;
        _layer = layer;
        foreach (var p in projections) register_module(p.GetName(), p);
        if (qNorm is not null) register_module("q_norm", qNorm);
        if (kNorm is not null) register_module("k_norm", kNorm);
        Projections = projections;
        Output = projections[^1];
        QNorm = qNorm;
        KNorm = kNorm;
    }

    public IReadOnlyList<Projection> Projections { get; }
    public Projection Output { get; }
    public RmsNormModule? QNorm { get; }
    public RmsNormModule? KNorm { get; }
    internal DecoderKernels Kernels { get; set; } = DecoderKernels.Reference;

    public override Tensor forward(Tensor x) => throw new NotSupportedException("call CausalLM.Forward");

    /// <summary>input [B, T, H], the input norm's output → [B, T, H].</summary>
    public Tensor Forward(NormedInput input, LayerContext ctx)
    {
        using var scope = NewDisposeScope();
        var x = input.Value;
        var (b, t) = (x.shape[0], x.shape[1]);
        var (nh, nkv, hd) = ((long)_cfg.NumAttentionHeads, (long)_cfg.NumKeyValueHeads, (long)_cfg.HeadDim);
        Tensor q, k, v;
        if (Projections.Count == 2)
        {
            // split, not narrows: one cat of the three gradients in backward (see GatedMlp.Forward).
            var parts = Projections[0].Forward(input).split([nh * hd, nkv * hd, nkv * hd], -1);
            (q, k, v) = (parts[0], parts[1], parts[2]);
        }
        else (q, k, v) = (Projections[0].Forward(input), Projections[1].Forward(input), Projections[2].Forward(input));
        q = q.contiguous().view(b, t, nh, hd);
        k = k.contiguous().view(b, t, nkv, hd);
        v = v.contiguous().view(b, t, nkv, hd);
        if (QNorm is not null) q = QNorm.forward(q);
        if (KNorm is not null) k = KNorm.forward(k);
        var (cos, sin) = ctx.RopeOf(_layer);
        if (ctx.PerRowPositions)
        {
            // cos/sin are per token [B·T, d]: the rows laid end to end as one sequence.
            q = Kernels.Rope(q.view(1, b * t, nh, hd), cos, sin).view(b, t, nh, hd);
            k = Kernels.Rope(k.view(1, b * t, nkv, hd), cos, sin).view(b, t, nkv, hd);
        }
        else
        {
            q = Kernels.Rope(q, cos, sin);
            k = Kernels.Rope(k, cos, sin);
        }
        q = q.transpose(1, 2);
        k = k.transpose(1, 2);
        v = v.transpose(1, 2);
        if (ctx.Cache is not null) (k, v) = ctx.Cache.Append(_layer, k, v);
        Tensor attn;
        if (_cfg.AttentionSoftcap is { } cap)
        {
            // Gemma 2: SDPA has no soft-cap. The reference kernels run transformers' eager path (K and V expanded to
            // every query head, as its repeat_kv); the fused set the same math block by block on the grouped K and V,
            // the scores made again in backward instead of kept. The causal mask and its blocks' key spans are the
            // context's, made once for every layer.
            var (allowed, spans) = ctx.SoftcapMaskOf(_layer);
            attn = Kernels.SoftcapAttention(q, k, v, allowed, _cfg.AttentionScale, cap, spans);
            // Its node keeps no output (the blocks are made again in backward): the o projection keeps its own copy.
            return Output.forward(attn.transpose(1, 2).reshape(b, t, nh * hd)).MoveToOuterDisposeScope();
        }
        else
        {
            var (mask, causal) = ctx.MaskOf(_layer);
            // SDPA scales by head_dim^-½; another scale (Gemma's query_pre_attn_scalar) goes into q first.
            var extra = _cfg.AttentionScale * Math.Sqrt(hd);
            if (Math.Abs(extra - 1) > 1e-12) q = q * extra;
            attn = Kernels.Attention(q, k, v, mask, mask is null && causal);
        }
        // SDPA's node keeps its output for its own backward: the kernels may let the o projection keep that instead of
        // a copy of it (DecoderKernels.OutputProjection).
        return Kernels.OutputProjection(Output, attn).MoveToOuterDisposeScope();
    }
}

/// <summary>One decoder layer: x + [post-norm](attn(norm(x))), then + [post-norm](mlp(norm(·))); the bracketed norms
/// exist in Gemma's sandwich layout only.</summary>
internal sealed class DecoderLayer : Module<Tensor, Tensor>
{
    protected override void RegisterComponents() { }

    public DecoderLayer(int index, SelfAttention attn, GatedMlp mlp, IReadOnlyList<RmsNormModule> norms) : base(index.ToString(System.Globalization.CultureInfo.InvariantCulture))
    {
        Index = index;
        (Attention, Mlp) = (attn, mlp);
        register_module("self_attn", attn);
        register_module("mlp", mlp);
        foreach (var n in norms) register_module(n.GetName(), n);
        Norms = norms;
        if (norms.Count == 4) (InputNorm, PostAttentionNorm, PreMlpNorm, PostMlpNorm) = (norms[0], norms[1], norms[2], norms[3]);
        else (InputNorm, PreMlpNorm) = (norms[0], norms[1]);
    }

    public int Index { get; }
    public SelfAttention Attention { get; }
    public GatedMlp Mlp { get; }
    public IReadOnlyList<RmsNormModule> Norms { get; }
    public RmsNormModule InputNorm { get; }
    public RmsNormModule? PostAttentionNorm { get; }
    public RmsNormModule PreMlpNorm { get; }
    public RmsNormModule? PostMlpNorm { get; }

    /// <summary>Every projection of the layer, in module order.</summary>
    public IEnumerable<Projection> Projections => Attention.Projections.Concat(Mlp.Projections);

    /// <summary>Every projection with its module path in the checkpoint ("model.layers.0.self_attn.q_proj"), in module
    /// order: the names LoRA targets match and merged weights are written under.</summary>
    public IEnumerable<(string Path, Projection Projection)> ProjectionPaths =>
        Attention.Projections.Select(p => ($"{DecoderLayout.LayerPrefix(Index)}self_attn.{p.GetName()}", p))
            .Concat(Mlp.Projections.Select(p => ($"{DecoderLayout.LayerPrefix(Index)}mlp.{p.GetName()}", p)));

    /// <summary>Called at the start of every computation of this layer (a forward, and the recomputation of a
    /// checkpointed layer in backward); what it returns is disposed when done. Sharding (ShardedCausalLM) all-gathers
    /// the layer's NF4 weights here and frees them on dispose. Null: nothing.</summary>
    internal Func<IDisposable?>? AroundCompute { get; set; }

    public override Tensor forward(Tensor x) => throw new NotSupportedException("call CausalLM.Forward");

    /// <summary><paramref name="dropoutSeed"/>: seeds the LoRA dropout masks of this layer for this call (null: none).</summary>
    public Tensor Forward(Tensor x, LayerContext ctx, ulong? dropoutSeed)
    {
        using var around = AroundCompute?.Invoke();
        using var scope = NewDisposeScope();
        // A CPU generator: TorchSharp 0.107 gives a CPU generator for Generator(seed, cuda) too, which CUDA rand rejects
        // (seen on the H100); masks are drawn on the CPU and copied, the same bits on every device.
        using var gen = dropoutSeed is { } s ? new Generator(s) : null;
        foreach (var p in Projections) if (p.Lora is { } l) l.DropoutGenerator = gen;
        try
        {
            var a = Attention.Forward(InputNorm.ForProjections(x), ctx);
            if (PostAttentionNorm is not null) a = PostAttentionNorm.forward(a);
            var h = x + a;
            var m = Mlp.Forward(PreMlpNorm.ForProjections(h));
            if (PostMlpNorm is not null) m = PostMlpNorm.forward(m);
            return (h + m).MoveToOuterDisposeScope();
        }
        finally
        {
            foreach (var p in Projections) if (p.Lora is { } l) l.DropoutGenerator = null;
        }
    }
}

/// <summary>The decoder stack (<c>model.*</c> in Hugging Face names): embed_tokens, layers.N, norm.</summary>
internal sealed class DecoderStack : Module
{
    protected override void RegisterComponents() { }

    public DecoderStack(WeightOnly embed, IList<DecoderLayer> layers, RmsNormModule norm) : base("model")
    {
        Embed = embed;
        Layers = layers.ToArray();
        Norm = norm;
        register_module("embed_tokens", embed);
        register_module("layers", new ModuleList<DecoderLayer>(Layers));
        register_module("norm", norm);
    }

    public WeightOnly Embed { get; }
    public DecoderLayer[] Layers { get; }
    public RmsNormModule Norm { get; }
}
