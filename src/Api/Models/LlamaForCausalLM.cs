using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Models;

/// <summary>The decoder stack (<c>model.*</c> in Hugging Face names): embed_tokens, layers.N, norm.</summary>
internal sealed class LlamaModel : Module
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    public LlamaModel(WeightOnly embed, IList<LlamaDecoderLayer> layers, LlamaRmsNorm norm) : base("model")
    {
        Embed = embed;
        Layers = layers.ToArray();
        Norm = norm;
        register_module("embed_tokens", embed);
        register_module("layers", new ModuleList<LlamaDecoderLayer>(Layers));
        register_module("norm", norm);
    }

    public WeightOnly Embed { get; }
    public LlamaDecoderLayer[] Layers { get; }
    public LlamaRmsNorm Norm { get; }
}

/// <summary>
/// A Hugging Face Llama causal LM (Llama 2, 3, 3.1, 3.2) as TorchSharp modules whose <c>state_dict()</c> keys equal the
/// checkpoint's (<c>model.embed_tokens.weight</c>, <c>model.layers.N.self_attn.q_proj.weight</c> + bitsandbytes' keys
/// when NF4, …, <c>lm_head.weight</c> when untied). Load with <see cref="FromPretrained"/>. Every weight is frozen;
/// <see cref="AddLora"/> adds trainable float32 adapters with PEFT's names and semantics.
/// </summary>
public sealed class LlamaForCausalLM : Module
{
    /// <summary>Children are registered explicitly under Hugging Face names; TorchSharp's reflection-based
    /// registration would add the C# fields and properties a second time under their own names.</summary>
    protected override void RegisterComponents() { }

    private readonly LlamaModel _model;
    private readonly WeightOnly? _lmHead;
    private readonly Tensor _invFreq;  // not a buffer: transformers keeps inv_freq out of the state dict as well

    internal LlamaForCausalLM(LlamaConfig config, string sourceDirectory, Device device, ScalarType dtype, bool quantized,
                              LlamaModel model, WeightOnly? lmHead) : base("LlamaForCausalLM")
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
        _invFreq = LlamaRope.InverseFrequencies(config).to(device).DetachFromDisposeScope();
        eval();
    }

    /// <summary>Loads a Hugging Face model directory: config.json and model.safetensors (or shards listed in
    /// model.safetensors.index.json), dense or bitsandbytes 4-bit. See <see cref="LoadOptions"/>.</summary>
    public static LlamaForCausalLM FromPretrained(string dir, LoadOptions? options = null) => LlamaLoader.Load(dir, options ?? new LoadOptions());

    /// <summary>
    /// A model of <paramref name="config"/>'s shape with random weights made in memory on the target device (no
    /// checkpoint file): linears and embeddings N(0, 0.02²) as transformers initializes a Llama, norms 1, drawn from
    /// <paramref name="seed"/> on that device, stored in the compute dtype; with <see cref="LoadOptions.Quantize"/> the
    /// decoder projections are quantized to NF4 there (on CUDA by the GPU kernel). For benchmarks and tests;
    /// <see cref="SourceDirectory"/> is empty.
    /// </summary>
    public static LlamaForCausalLM CreateRandom(LlamaConfig config, long seed, LoadOptions? options = null) =>
        LlamaRandomInit.Create(config, seed, options ?? new LoadOptions());

    public LlamaConfig Config { get; }
    public string SourceDirectory { get; }
    public Device Device { get; }
    public ScalarType ComputeDtype { get; }
    /// <summary>True when the decoder projections are NF4 (false: the dense reference).</summary>
    public bool IsQuantized { get; }

    /// <summary>Recompute each decoder layer in backward instead of keeping its activations (training only; not used
    /// with a <see cref="KvCache"/>).</summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>With <see cref="GradientCheckpointing"/>: decoder layer i is recomputed in backward when
    /// i % <see cref="GradientCheckpointingInterval"/> == 0 (1, the default: every layer; 2: every other layer, and so
    /// on); the others keep their activations. Trades memory against the recomputation's time.</summary>
    public int GradientCheckpointingInterval
    {
        get => _checkpointInterval;
        set => _checkpointInterval = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "must be >= 1");
    }

    private int _checkpointInterval = 1;

    /// <summary>
    /// True: the decoder runs SlothSharp's fused ops — RMSNorm, RoPE and SwiGLU kernels, and each NF4
    /// projection with its LoRA adapter as one autograd node (<see cref="Ops.Nf4LoraLinear"/>) that dequantizes its
    /// weight again in backward instead of keeping it from forward. False: the plain TorchSharp ops (the reference
    /// path), on the same NF4 weights. Both compute the same function; they differ in memory, speed and rounding
    /// order (bench/results/2026-11-23-h100-round3/step: 1B shape, 67k vs 49k tokens/s, 10.6 vs 18.2 GB, losses within
    /// two bf16 ulps over 100 steps). On by default; FSDP sharding (SlothSharp.Distributed) turns it off.
    /// </summary>
    public bool UseFusedKernels { get; set; } = true;

    public LoraConfig? Lora { get; private set; }

    /// <summary>The LM head [V, H] in <see cref="ComputeDtype"/> (the embedding table when tied).</summary>
    public Tensor LmHeadWeight => _lmHead?.Weight ?? _model.Embed.Weight;

    internal LlamaModel Model => _model;

    /// <summary>
    /// Hidden states after the final norm, [B, T, H] in <see cref="ComputeDtype"/>. inputIds: int64 [B, T] on
    /// <see cref="Device"/>. attentionMask: [B, T] (or [B, cache.Length + T] with a cache) int64/int32/bool, 1 = token,
    /// right padding; null = all tokens. With a cache, positions continue from cache.Length and the cache is extended.
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, KvCache? cache = null)
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
        if (past + t > Config.MaxPositionEmbeddings)
            throw new ArgumentException($"{past + t} tokens exceed max_position_embeddings {Config.MaxPositionEmbeddings} of {Path.Combine(SourceDirectory, "config.json")}", nameof(inputIds));
        if (cache is not null)
        {
            if (cache.Batch != b) throw new ArgumentException($"the cache holds batch {cache.Batch}; inputIds have batch {b}", nameof(cache));
            if (past + t > cache.MaxLength) throw new ArgumentException($"the cache holds {cache.MaxLength} tokens; {past} cached + {t} new exceed it", nameof(cache));
        }

        using var scope = NewDisposeScope();
        // An id outside the table would be a device-side assert on CUDA (the process cannot continue): check first,
        // with one host read for both bounds.
        long lo, hi;
        using (var bounds = stack([inputIds.min(), inputIds.max()]).cpu())
        {
            var b2 = bounds.data<long>();
            (lo, hi) = (b2[0], b2[1]);
        }
        if (lo < 0 || hi >= Config.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(inputIds), $"token ids must be in [0, vocab_size {Config.VocabSize}); got [{lo}, {hi}]");
        var keyValid = KeyValidity(attentionMask, cache, b, t, past);
        var checkpoint = GradientCheckpointing && cache is null && is_grad_enabled();
        var (cos, sin) = LlamaRope.Tables(_invFreq, past, t, ComputeDtype);
        var (mask, causal) = BuildMask(keyValid, past, t);
        var inputs = new LayerInputs(cos, sin, mask, causal, cache, UseFusedKernels);
        var h = _model.Embed.forward(inputIds);
        var dropout = training && Lora is { Dropout: > 0 };
        for (var i = 0; i < _model.Layers.Length; i++)
        {
            ulong? seed = dropout ? (ulong)randint(0, int.MaxValue, [1], ScalarType.Int64).item<long>() : null;
            h = checkpoint && i % _checkpointInterval == 0 ? CheckpointedLayerFunction.Run(_model.Layers[i], h, inputs, i, seed)
                           : _model.Layers[i].Forward(h, inputs, i, seed);
        }
        cache?.Advance((int)t);
        return _model.Norm.Forward(h, UseFusedKernels).MoveToOuterDisposeScope();
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

    /// <summary>No mask (causal or not) when nothing is padded and the query block starts at 0 or is one token;
    /// otherwise bool [B|1, 1, T, past + T]: key j is visible to query i when j ≤ past + i and j is a real token. A
    /// query that would see nothing (left padding) sees itself, so no row is fully masked (that would give NaN).</summary>
    private (Tensor? Mask, bool Causal) BuildMask(Tensor? keyValid, long past, long t)
    {
        if (keyValid is null && past == 0) return (null, t > 1);
        if (keyValid is null && t == 1) return (null, false);
        var q = arange(past, past + t, 1, ScalarType.Int64, Device).unsqueeze(1);
        var k = arange(0, past + t, 1, ScalarType.Int64, Device).unsqueeze(0);
        var allowed = k.le(q).unsqueeze(0);                                   // [1, T, L]
        if (keyValid is not null) allowed = allowed & keyValid.unsqueeze(1);  // [B, T, L]
        var none = allowed.any(-1, keepdim: true).logical_not();
        allowed = allowed | (none & k.eq(q).unsqueeze(0));
        return (allowed.unsqueeze(1), false);
    }

    /// <summary>A cache for <paramref name="batch"/> sequences of up to <paramref name="maxLength"/> tokens.</summary>
    public KvCache NewKvCache(int batch, int maxLength)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "must be >= 1");
        if (maxLength < 1 || maxLength > Config.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"must be in [1, max_position_embeddings {Config.MaxPositionEmbeddings}]");
        return new KvCache(Config, batch, maxLength, ComputeDtype, Device);
    }

    /// <summary>Logits in float32 [.., V] for hidden states [.., H] (the LM head in the compute dtype, then cast).</summary>
    public Tensor Logits(Tensor hidden)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        using var logits = functional.linear(hidden.to(ComputeDtype), LmHeadWeight);
        return logits.to(ScalarType.Float32);
    }

    /// <summary>
    /// Adds LoRA adapters (PEFT semantics) to the targeted projections of every layer, in module order: A [r, in]
    /// ~ U(−1/√in, 1/√in) from <paramref name="seed"/>, B [out, r] = 0, float32 on <see cref="Device"/>. The base stays
    /// frozen. Throws when adapters exist already.
    /// </summary>
    public void AddLora(LoraConfig config, long seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (Lora is not null) throw new InvalidOperationException("this model has LoRA adapters already");
        var targets = config.ResolvedTargets;
        using var gen = new Generator((ulong)seed);
        foreach (var layer in _model.Layers)
            foreach (var p in layer.Projections)
                if (targets.Contains(p.GetName()))
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
    /// Every tensor of a dense Hugging Face checkpoint of this model, in checkpoint order, as new CPU tensors of
    /// <paramref name="dtype"/>: decoder projections dequantized with W + scale·B·A folded in (computed in float32).
    /// The caller disposes each tensor.
    /// </summary>
    public IEnumerable<KeyValuePair<string, Tensor>> MergedDenseWeights(ScalarType dtype)
    {
        KeyValuePair<string, Tensor> Dense(string key, Tensor t) => new(key, t.detach().to(dtype).cpu().clone());
        yield return Dense("model.embed_tokens.weight", _model.Embed.Weight);
        for (var i = 0; i < _model.Layers.Length; i++)
        {
            var layer = _model.Layers[i];
            var prefix = $"model.layers.{i}.";
            yield return Dense(prefix + "input_layernorm.weight", layer.InputNorm.get_parameter("weight")!);
            foreach (var p in layer.Projections)
            {
                var key = prefix + (p.GetName() is "gate_proj" or "up_proj" or "down_proj" ? "mlp." : "self_attn.") + p.GetName();
                Tensor merged;
                using (no_grad())
                using (var scope = NewDisposeScope())
                {
                    var w = p.DenseWeight(ScalarType.Float32);
                    if (p.Lora is var (a, b)) w = w + b.to(ScalarType.Float32).matmul(a.to(ScalarType.Float32)) * Lora!.Scale;
                    merged = w.to(dtype).cpu().contiguous().MoveToOuterDisposeScope();
                }
                yield return new(key + ".weight", merged);
                if (p.Bias is { } bias) yield return Dense(key + ".bias", bias);
            }
            yield return Dense(prefix + "post_attention_layernorm.weight", layer.PostNorm.get_parameter("weight")!);
        }
        yield return Dense("model.norm.weight", _model.Norm.get_parameter("weight")!);
        if (_lmHead is not null) yield return Dense("lm_head.weight", _lmHead.Weight);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _invFreq.Dispose();
        base.Dispose(disposing);
    }
}
