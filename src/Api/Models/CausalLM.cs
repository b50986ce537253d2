using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>
/// A Hugging Face decoder-only causal LM of any supported family (<see cref="ModelFamilies"/>: Llama, Mistral, Qwen2,
/// Qwen3, Gemma 2, Gemma 3, Phi-3) as TorchSharp modules on one shared decoder whose architecture is data
/// (<see cref="ModelConfig"/>). <c>state_dict()</c> keys equal the checkpoint's (<c>model.embed_tokens.weight</c>,
/// <c>model.layers.N.self_attn.q_proj.weight</c> + bitsandbytes' keys when NF4, …, <c>lm_head.weight</c> when untied).
/// Load with <see cref="FromPretrained"/>. Every weight is frozen; <see cref="AddLora"/> adds trainable float32
/// adapters with PEFT's names and semantics.
/// </summary>
public sealed class CausalLM : Module
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    private readonly DecoderStack _model;
    private readonly WeightOnly? _lmHead;
    // Not buffers: transformers keeps inv_freq out of the state dict as well.
    private readonly Dictionary<RopeSpec, RotaryEmbedding> _ropes = new();

    internal CausalLM(ModelConfig config, string sourceDirectory, Device device, ScalarType dtype, bool quantized,
                      DecoderStack model, WeightOnly? lmHead) : base("CausalLM")
    {
        Config = config;
        SourceDirectory = sourceDirectory;
        Device = device;
        ComputeDtype = dtype;
        IsQuantized = quantized;
        _model = model;
        _lmHead = lmHead;
        register_module("model", model);
        if (lmHead is not null) register_module("lm_head", lmHead);
        for (var i = 0; i < config.NumHiddenLayers; i++)
        {
            var spec = config.RopeOf(i);
            if (!_ropes.ContainsKey(spec)) _ropes[spec] = new RotaryEmbedding(spec, config.HeadDim, device);
        }
        UseFusedKernels = true;
        eval();
    }

    /// <summary>Loads a Hugging Face model directory: config.json and model.safetensors (or shards listed in
    /// model.safetensors.index.json), dense or bitsandbytes 4-bit. See <see cref="LoadOptions"/>.</summary>
    public static CausalLM FromPretrained(string dir, LoadOptions? options = null) => ModelLoader.Load(dir, options ?? new LoadOptions());

    /// <summary>
    /// A model of <paramref name="config"/>'s shape with random weights made in memory on the target device (no
    /// checkpoint file): linears and embeddings N(0, 0.02²) as transformers initializes them, norms at their identity
    /// (1, or 0 for Gemma's 1 + w), drawn from <paramref name="seed"/>, stored in the compute dtype; with
    /// <see cref="LoadOptions.Quantize"/> the decoder projections are quantized to NF4 there. For benchmarks and tests;
    /// <see cref="SourceDirectory"/> is empty.
    /// </summary>
    public static CausalLM CreateRandom(ModelConfig config, long seed, LoadOptions? options = null) =>
        RandomInit.Create(config, seed, options ?? new LoadOptions());

    public ModelConfig Config { get; }
    public string SourceDirectory { get; }
    public Device Device { get; }
    public ScalarType ComputeDtype { get; }
    /// <summary>True when the decoder projections are NF4 (false: the dense reference).</summary>
    public bool IsQuantized { get; }

    /// <summary>Recompute each decoder layer in backward instead of keeping its activations (training only; not used
    /// with a <see cref="KvCache"/>).</summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>With <see cref="GradientCheckpointing"/>: decoder layer i is recomputed in backward when
    /// i % <see cref="GradientCheckpointingInterval"/> == 0 (1, the default: every layer).</summary>
    public int GradientCheckpointingInterval
    {
        get => _checkpointInterval;
        set => _checkpointInterval = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "must be >= 1");
    }

    private int _checkpointInterval = 1;
    private bool _fused;

    /// <summary>
    /// True (the default): the decoder runs SlothSharp's fused kernels — RMSNorm, RoPE and SwiGLU kernels, and each NF4
    /// projection with its LoRA adapter as one autograd node (<see cref="Ops.Nf4LoraLinear"/>) that dequantizes its
    /// weight again in backward instead of keeping it. False: the plain TorchSharp ops (the reference path), on the
    /// same weights. Setting it puts the chosen <see cref="DecoderKernels"/> into every module once; no forward takes a
    /// flag. Both compute the same function; they differ in memory, speed and rounding order.
    /// </summary>
    public bool UseFusedKernels
    {
        get => _fused;
        set
        {
            _fused = value;
            InstallKernels(CurrentKernels);
        }
    }

    /// <summary>
    /// With the fused kernels, SDPA attention in training is recomputed in backward (<see cref="Ops.GqaAttention"/>):
    /// each layer keeps q and the grouped k and v instead of SDPA's copies of K and V expanded to every query head and
    /// its output (Phi-4-mini, 24 query heads over 8 KV heads: 5,120 values a token and layer instead of 12,288), for
    /// one more attention forward per layer. The same gradients bit for bit. Off by default (it costs speed: see
    /// docs/performance.md, round 15); no effect on the reference kernels, soft-capped attention or inference.
    /// </summary>
    public bool RecomputeAttention
    {
        get => _recomputeAttention;
        set => SetKernelOption(ref _recomputeAttention, value, nameof(RecomputeAttention));
    }

    /// <summary>
    /// With the fused kernels, the RMSNorm outputs that feed NF4 projections with LoRA adapters (each layer's input norm
    /// into q/k/v or qkv_proj, its pre-MLP norm into gate/up or gate_up_proj) are made again in backward from the norm's
    /// input instead of kept: the adapter's dA is their one reader there, and the norm's own node keeps its input
    /// anyway. Saves tokens × hidden × dtype size per norm and layer (two per layer: Phi-4-mini at 8 × 1,024 tokens in
    /// bf16, 50 MB each, 3.2 GB over 32 layers), for one norm forward kernel per consuming projection in backward
    /// (Llama's q, k and v each make it again: 5 a layer; Phi-3's fused projections: 2). The same loss and gradients bit
    /// for bit (the same kernel on the same bits), with dropout and inside checkpointed layers too. Off by default
    /// (Phi-4-mini on an H100: 3.1 GB less for 1% of the speed, docs/performance.md round 16); no effect on the reference
    /// kernels or inference.
    /// </summary>
    public bool RecomputeNorms
    {
        get => _recomputeNorms;
        set => SetKernelOption(ref _recomputeNorms, value, nameof(RecomputeNorms));
    }

    /// <summary>
    /// With the fused kernels, how soft-capped attention (Gemma 2) runs: <see cref="Ops.SoftcapAttentionMethod.Auto"/>
    /// (default) and <see cref="Ops.SoftcapAttentionMethod.Blocks"/> in blocks of query rows around fused row-wise
    /// kernels; <see cref="Ops.SoftcapAttentionMethod.Flash"/> through the one-pass kernels where they run (CUDA, bf16
    /// or f16, sm_80+), else in blocks. Within the dtype's rounding of each other; the one-pass kernels keep less for
    /// backward (docs/performance.md, round 16). No effect on the reference kernels or inference.
    /// </summary>
    public Ops.SoftcapAttentionMethod SoftcapAttentionMethod
    {
        get => _softcapMethod;
        set => SetKernelOption(ref _softcapMethod,
            Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "not a SoftcapAttentionMethod"),
            nameof(SoftcapAttentionMethod));
    }

    private bool _recomputeAttention;
    private bool _recomputeNorms;
    private Ops.SoftcapAttentionMethod _softcapMethod;
    private DecoderKernels? _installed;

    /// <summary>Sets one of the fused set's options and installs the set they now choose.</summary>
    private void SetKernelOption<T>(ref T option, T value, string name)
    {
        ThrowIfSharded(name);
        option = value;
        InstallKernels(CurrentKernels);
    }

    /// <summary>A sharded model installed its own variant of the fused set (made from these options when it sharded);
    /// replacing it would undo the sharding's kernels.</summary>
    private void ThrowIfSharded(string option)
    {
        if (_installed is { } k && k != DecoderKernels.Reference && !DecoderKernels.IsFusedSet(k))
            throw new InvalidOperationException($"{option} cannot change the kernels a sharded model installed; set it before sharding");
    }

    /// <summary>The fused set these options choose (what sharding wraps).</summary>
    internal DecoderKernels FusedKernelSet =>
        DecoderKernels.FusedWith(_recomputeAttention, _recomputeNorms, _softcapMethod == Ops.SoftcapAttentionMethod.Flash);

    private DecoderKernels CurrentKernels => _fused ? FusedKernelSet : DecoderKernels.Reference;

    /// <summary>Puts <paramref name="kernels"/> into every module (sharding installs its own variant of the fused set).</summary>
    internal void InstallKernels(DecoderKernels kernels)
    {
        _installed = kernels;
        {
            foreach (var layer in _model.Layers)
            {
                foreach (var p in layer.Projections) p.Kernels = kernels;
                foreach (var n in layer.Norms) n.Kernels = kernels;
                layer.Attention.Kernels = kernels;
                if (layer.Attention.QNorm is { } qn) qn.Kernels = kernels;
                if (layer.Attention.KNorm is { } kn) kn.Kernels = kernels;
            }
            _model.Norm.Kernels = kernels;
        }
    }

    public LoraConfig? Lora { get; private set; }

    /// <summary>The LM head [V, H] in <see cref="ComputeDtype"/> (the embedding table when tied).</summary>
    public Tensor LmHeadWeight => _lmHead?.Weight ?? _model.Embed.Weight;

    internal DecoderStack Model => _model;

    /// <summary>
    /// Hidden states after the final norm, [B, T, H] in <see cref="ComputeDtype"/>. inputIds: int64 [B, T] on
    /// <see cref="Device"/>. attentionMask: [B, T] (or [B, cache.Length + T] with a cache) int64/int32/bool, 1 = token,
    /// right padding; null = all tokens. With a cache, positions continue from cache.Length and the cache is extended.
    /// positionIds: int64 [B, T] (packed documents: positions restart at each document) or null (0, 1, …);
    /// sequenceIds: int64 [B, T], tokens attend only to earlier tokens of the same id (block-diagonal causal attention
    /// for packed documents), or null (training only, no cache). With a cache, positionIds give each row's own positions
    /// (left-padded batched generation: a row's positions trail its cache slots by its padding); the cache slot count
    /// may then exceed max_position_embeddings, the positions may not.
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, KvCache? cache = null, Tensor? positionIds = null, Tensor? sequenceIds = null)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        CheckpointedLayerFunction.ThrowIfFailed();
        if (inputIds.ndim != 2 || inputIds.shape[1] < 1)
            throw new ArgumentException($"inputIds must be [batch, tokens] with tokens >= 1; got [{string.Join(", ", inputIds.shape)}]", nameof(inputIds));
        if (inputIds.dtype != ScalarType.Int64)
            throw new ArgumentException($"inputIds must be int64; got {inputIds.dtype}", nameof(inputIds));
        if (inputIds.device_type != Device.type || (Device.type == TorchSharp.DeviceType.CUDA && inputIds.device_index != Math.Max(Device.index, 0)))
            throw new ArgumentException($"inputIds are on {inputIds.device}; the model is on {Device}", nameof(inputIds));
        var (b, t) = (inputIds.shape[0], inputIds.shape[1]);
        var past = cache?.Length ?? 0;
        if (positionIds is null && past + t > Config.MaxPositionEmbeddings)
            throw new ArgumentException($"{past + t} tokens exceed max_position_embeddings {Config.MaxPositionEmbeddings} of {Path.Combine(SourceDirectory, "config.json")}", nameof(inputIds));
        if (cache is not null)
        {
            if (cache.Batch != b) throw new ArgumentException($"the cache holds batch {cache.Batch}; inputIds have batch {b}", nameof(cache));
            if (past + t > cache.MaxLength) throw new ArgumentException($"the cache holds {cache.MaxLength} tokens; {past} cached + {t} new exceed it", nameof(cache));
            if (sequenceIds is not null)
                throw new ArgumentException("sequenceIds are for training on packed rows, not with a KV cache", nameof(cache));
        }
        foreach (var (given, name) in new[] { (positionIds, nameof(positionIds)), (sequenceIds, nameof(sequenceIds)) })
            if (given is not null && (!given.shape.SequenceEqual(inputIds.shape) || given.dtype != ScalarType.Int64))
                throw new ArgumentException($"{name} must be int64 [{b}, {t}] like inputIds; got {given.dtype} [{string.Join(", ", given.shape)}]", name);

        using var scope = NewDisposeScope();
        // An id outside the table would be a device-side assert on CUDA (the process cannot continue): check first,
        // with one host read for all bounds.
        long lo, hi, posMax = past + t - 1;
        using (var bounds = (positionIds is null ? stack([inputIds.min(), inputIds.max()]) : stack([inputIds.min(), inputIds.max(), positionIds.max(), positionIds.min()])).cpu())
        {
            var b2 = bounds.data<long>();
            (lo, hi) = (b2[0], b2[1]);
            if (positionIds is not null)
            {
                if (b2[3] < 0) throw new ArgumentOutOfRangeException(nameof(positionIds), $"positions must be >= 0; got {b2[3]}");
                posMax = b2[2];
            }
        }
        if (lo < 0 || hi >= Config.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(inputIds), $"token ids must be in [0, vocab_size {Config.VocabSize}); got [{lo}, {hi}]");
        if (posMax >= Config.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(positionIds), $"position {posMax} exceeds max_position_embeddings {Config.MaxPositionEmbeddings}");
        var keyValid = KeyValidity(attentionMask, cache, b, t, past);
        var checkpoint = GradientCheckpointing && cache is null && is_grad_enabled();
        var positions = positionIds ?? arange(past, past + t, 1, ScalarType.Int64, Device);
        var ctx = LayerContext.Build(Config, _ropes, positions, posMax + 1, keyValid, sequenceIds, past, t, ComputeDtype, cache);
        var h = Embed(inputIds);
        // The first checkpointed layer makes its input again from the ids in backward (a frozen embedding), so the
        // embedding output is released as soon as that layer has run.
        var recompute = checkpoint ? new RecomputableInput(inputIds, Embed) : null;
        var dropout = training && Lora is { Dropout: > 0 };
        for (var i = 0; i < _model.Layers.Length; i++)
        {
            ulong? seed = dropout ? (ulong)randint(0, int.MaxValue, [1], ScalarType.Int64).item<long>() : null;
            if (checkpoint && i % _checkpointInterval == 0)
            {
                var input = h;
                var rebuild = i == 0 && !input.requires_grad ? recompute : null;  // a trainable embedding: kept
                h = CheckpointedLayerFunction.Run(_model.Layers[i], input, ctx, seed, rebuild);
                if (rebuild is not null) input.Dispose();
            }
            else h = _model.Layers[i].Forward(h, ctx, seed);
        }
        cache?.Advance((int)t);
        return _model.Norm.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>The first layer's input: the embedding rows of <paramref name="ids"/>, Gemma's × √hidden with the factor
    /// rounded to the compute dtype first (as transformers' normalizer).</summary>
    private Tensor Embed(Tensor ids)
    {
        var h = _model.Embed.forward(ids);
        if (!Config.ScaleEmbeddings) return h;
        using var unscaled = h;
        return h * tensor(Math.Sqrt(Config.HiddenSize), ComputeDtype, Device);
    }

    /// <summary>Bool [B, past + T] (true = a real token), or null when every position is a token.</summary>
    private Tensor? KeyValidity(Tensor? attentionMask, KvCache? cache, long b, long t, long past)
    {
        Tensor? given = null;
        if (attentionMask is not null)
        {
            var ok = attentionMask.ndim == 2 && attentionMask.shape[0] == b &&
                     (attentionMask.shape[1] == t || attentionMask.shape[1] == past + t);
            if (!ok)
                throw new ArgumentException($"attentionMask must be [{b}, {t}]{(past > 0 ? $" or [{b}, {past + t}]" : "")}; got [{string.Join(", ", attentionMask.shape)}]", nameof(attentionMask));
            if (attentionMask.dtype is not (ScalarType.Int64 or ScalarType.Int32 or ScalarType.Bool or ScalarType.Byte))
                throw new ArgumentException($"attentionMask must be int64, int32 or bool; got {attentionMask.dtype}", nameof(attentionMask));
            given = attentionMask.to(Device).ne(0);
        }
        if (cache is null)
            return given is null || given.all().item<bool>() ? null : given;
        if (given is null) cache.SetValid(ones([b, t], ScalarType.Bool, Device), past);
        else cache.SetValid(given, given.shape[1] == t ? past : 0);
        var all = cache.Valid(past + t);
        return all.all().item<bool>() ? null : all;
    }

    /// <summary>A cache for <paramref name="batch"/> sequences of up to <paramref name="maxLength"/> tokens.</summary>
    public KvCache NewKvCache(int batch, int maxLength)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "must be >= 1");
        if (maxLength < 1 || maxLength > Config.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"must be in [1, max_position_embeddings {Config.MaxPositionEmbeddings}]");
        return new KvCache(Config, batch, maxLength, ComputeDtype, Device);
    }

    /// <summary>A cache of <paramref name="slots"/> positions per row for left-padded batches, whose rows' positions
    /// (given to <see cref="Forward"/> as positionIds) stay within max_position_embeddings while the slots, padding
    /// included, may not.</summary>
    internal KvCache NewBatchKvCache(int batch, int slots)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "must be >= 1");
        if (slots < 1) throw new ArgumentOutOfRangeException(nameof(slots), slots, "must be >= 1");
        return new KvCache(Config, batch, slots, ComputeDtype, Device);
    }

    /// <summary>Logits in float32 [.., V] for hidden states [.., H]: the LM head in the compute dtype, then cast, then the
    /// family's final soft-cap (Gemma 2: c·tanh(z/c)).</summary>
    public Tensor Logits(Tensor hidden)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        using var scope = NewDisposeScope();
        var logits = functional.linear(hidden.to(ComputeDtype), LmHeadWeight).to(ScalarType.Float32);
        if (Config.FinalLogitSoftcap is { } cap) logits = (logits / cap).tanh() * cap;
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Adds LoRA adapters (PEFT semantics) to the targeted projections of every layer, in module order: A [r, in]
    /// ~ U(−1/√in, 1/√in) from <paramref name="seed"/>, B [out, r] = 0, float32 on <see cref="Device"/>. The base stays
    /// frozen. Throws when adapters exist already or a target is not a projection of this family.
    /// </summary>
    public void AddLora(LoraConfig config, long seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (Lora is not null) throw new InvalidOperationException("this model has LoRA adapters already");
        config.ResolveTargets(Config);  // every target names a projection of this model
        using var gen = new Generator((ulong)seed);
        foreach (var layer in _model.Layers)
            foreach (var (path, p) in layer.ProjectionPaths)
                if (config.Targets(path))
                    p.AddLora(config.Rank, config.Scale, config.Dropout, gen);
        Lora = config;
        foreach (var (name, p) in named_parameters())
            p.requires_grad = IsLoraName(name);
    }

    private static bool IsLoraName(string name) => name.Contains(".lora_A.") || name.Contains(".lora_B.");

    /// <summary>The adapters under PEFT's names without "base_model.model.", e.g.
    /// "model.layers.0.self_attn.q_proj.lora_A.weight", in module order.</summary>
    public IReadOnlyList<KeyValuePair<string, Parameter>> LoraParameters() =>
        named_parameters().Where(np => IsLoraName(np.name)).Select(np => new KeyValuePair<string, Parameter>(np.name, np.parameter)).ToList();

    /// <summary>
    /// Every tensor of a dense Hugging Face checkpoint of this model (<see cref="DecoderLayout"/>'s names), in checkpoint
    /// order, as new CPU tensors of <paramref name="dtype"/>: decoder projections dequantized with W + scale·B·A folded
    /// in (computed in float32). The caller disposes each tensor.
    /// </summary>
    public IEnumerable<KeyValuePair<string, Tensor>> MergedDenseWeights(ScalarType dtype)
    {
        // Fresh: the source already returns a new tensor (a merged projection), so it needs no defensive copy when the
        // dtype, device and layout already match; the model's own parameters are always copied.
        var sources = new Dictionary<string, (Func<Tensor> Get, bool Fresh)>(StringComparer.Ordinal)
        {
            [DecoderLayout.Embedding] = (() => _model.Embed.Weight, false),
            [DecoderLayout.FinalNorm] = (() => _model.Norm.Weight, false),
        };
        if (_lmHead is not null) sources[DecoderLayout.LmHead] = (() => _lmHead.Weight, false);
        foreach (var layer in _model.Layers)
        {
            var prefix = DecoderLayout.LayerPrefix(layer.Index);
            foreach (var n in layer.Norms) sources[$"{prefix}{n.GetName()}.weight"] = (() => n.Weight, false);
            if (layer.Attention.QNorm is { } qn) sources[$"{prefix}self_attn.q_norm.weight"] = (() => qn.Weight, false);
            if (layer.Attention.KNorm is { } kn) sources[$"{prefix}self_attn.k_norm.weight"] = (() => kn.Weight, false);
            foreach (var (path, p) in layer.ProjectionPaths)
            {
                sources[path + ".weight"] = (p.MergedWeight, true);
                if (p.Bias is { } bias) sources[path + ".bias"] = (() => bias, false);
            }
        }
        foreach (var (name, _, _) in DecoderLayout.Tensors(Config))
        {
            Tensor result;
            using (no_grad())
            using (var scope = NewDisposeScope())
            {
                var (get, fresh) = sources[name];
                var t = get();
                var converted = t.detach().to(dtype).cpu().contiguous();
                // A merged projection of the right dtype is returned as is (a gigabyte-sized copy saved per model).
                result = (fresh ? converted : converted.clone()).MoveToOuterDisposeScope();
            }
            yield return new(name, result);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            foreach (var r in _ropes.Values) r.Dispose();
        base.Dispose(disposing);
    }
}
