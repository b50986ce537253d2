using System.Text.Json.Nodes;
using SlothSharp.Inference;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Generation;

/// <summary><see cref="CausalLM"/> as an <see cref="ICausalLm"/>. Forward runs in eval mode (no LoRA
/// dropout) and restores the model's mode afterwards. With native decoding, each cache it makes carries a
/// <see cref="DecodeEngine"/> (made at the first decode step, disposed with the cache) that runs the single-token steps;
/// a model or cache the engine does not support keeps the model's forward (<see cref="NativeDecodingUnavailable"/> says
/// why).</summary>
internal sealed class CausalLmAdapter : ICausalLm
{
    private readonly CausalLM _model;
    private readonly bool _nativeDecoding;
    private readonly DecodeEngineOptions _engineOptions;

    public CausalLmAdapter(CausalLM model, bool nativeDecoding = false, bool mergeLora = false, bool denseWeights = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _nativeDecoding = nativeDecoding;
        _engineOptions = new DecodeEngineOptions(MergeLora: mergeLora, DequantizeWeights: denseWeights);
        EosTokenIds = StopIds(model);
        DynamicRopeLength = Enumerable.Range(0, model.Config.NumHiddenLayers).Select(model.Config.RopeOf)
            .FirstOrDefault(r => r.IsDynamic)?.OriginalMaxPositionEmbeddings;
    }

    /// <summary>The adapter the generators use for <paramref name="options"/> (null: the reference path).</summary>
    public static CausalLmAdapter For(CausalLM model, GenerationOptions? options) =>
        new(model, options?.NativeDecoding ?? false, options?.MergeLoraWhenDecoding ?? false, options?.DenseWeightsWhenDecoding ?? false);

    public Device Device => _model.Device;
    public int VocabSize => _model.Config.VocabSize;
    public int MaxPositionEmbeddings => _model.Config.MaxPositionEmbeddings;
    public IReadOnlyList<int> EosTokenIds { get; }
    public Tensor LmHeadWeight => _model.LmHeadWeight;
    public double? FinalLogitSoftcap => _model.Config.FinalLogitSoftcap;

    /// <summary>Why the last cache could not use the native decoding engine (null: it could, or it was not asked).</summary>
    public string? NativeDecodingUnavailable { get; private set; }

    public Tensor Forward(Tensor inputIds, Tensor? attentionMask, IDisposable? cache, Tensor? positionIds = null)
    {
        var wasTraining = _model.training;
        if (wasTraining) _model.eval();
        try { return _model.Forward(inputIds, attentionMask, Unwrap(cache), positionIds); }
        finally { if (wasTraining) _model.train(); }
    }

    public Tensor DecodeLogits(Tensor ids, Tensor positions, Tensor? attentionMask, IDisposable cache)
    {
        if (cache is not DecodingCache decoding || decoding.Engine(_model, this) is not { } engine)
            return ((ICausalLm)this).DecodeLogitsByForward(ids, positions, attentionMask, cache);
        using var scope = NewDisposeScope();
        var kv = decoding.Cache;
        var slot = kv.Length;
        // The engine reads the adapters as they are now (copied at its creation) and never applies dropout.
        var logits = engine.Step(ids.reshape(-1), positions.reshape(-1));
        // A masked new token (a finished row's filler) is marked as padding, as the model's forward would.
        if (attentionMask is not null) kv.SetValid(attentionMask.reshape(-1, 1).to(ScalarType.Bool), slot);
        return logits.clone().MoveToOuterDisposeScope();
    }

    public IDisposable NewKvCache(int batch, int maxLength)
    {
        var cache = _model.NewBatchKvCache(batch, maxLength);
        return _nativeDecoding ? new DecodingCache(cache) : cache;
    }

    public void ResetCache(IDisposable cache) => Unwrap(cache)!.Reset();

    private static KvCache? Unwrap(IDisposable? cache) => cache switch
    {
        null => null,
        DecodingCache d => d.Cache,
        KvCache k => k,
        _ => throw new ArgumentException($"not a cache of this model: {cache.GetType().Name}", nameof(cache)),
    };

    /// <summary>A KV cache and the decoding engine bound to it (made on first use; disposed before the cache).</summary>
    private sealed class DecodingCache(KvCache cache) : IDisposable
    {
        private DecodeEngine? _engine;
        private bool _tried;

        public KvCache Cache { get; } = cache;

        public DecodeEngine? Engine(CausalLM model, CausalLmAdapter owner)
        {
            if (_tried) return _engine;
            _tried = true;
            _engine = DecodeEngine.TryCreate(model, Cache, out var whyNot, owner._engineOptions);
            owner.NativeDecodingUnavailable = whyNot;
            return _engine;
        }

        public void Dispose()
        {
            _engine?.Dispose();
            Cache.Dispose();
        }
    }

    public int? DynamicRopeLength { get; }

    public Tensor Logits(Tensor hidden) => _model.Logits(hidden);

    /// <summary>config.json's EOS ids plus generation_config.json's eos_token_id (an int or a list; Llama 3 Instruct
    /// lists &lt;|eot_id|&gt; there), when that file exists.</summary>
    internal static IReadOnlyList<int> StopIds(CausalLM model)
    {
        var ids = new List<int>(model.Config.EosTokenIds);
        var path = Path.Combine(model.SourceDirectory, "generation_config.json");
        if (!File.Exists(path)) return ids;
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
        var eos = root is JsonObject o ? o["eos_token_id"] : null;
        var values = eos switch
        {
            null => Array.Empty<JsonNode?>(),
            JsonArray a => a.ToArray(),
            _ => new[] { eos },
        };
        foreach (var v in values)
        {
            if (v is not JsonValue jv || !jv.TryGetValue<int>(out var id))
                throw new InvalidDataException($"{path}: eos_token_id: expected an integer or a list of integers");
            if (!ids.Contains(id)) ids.Add(id);
        }
        return ids;
    }
}
