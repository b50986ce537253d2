using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>
/// What the decoder layers of one forward share: the cos/sin tables of each kind of RoPE the model uses, the attention
/// mask of each kind of layer (full or sliding window), and the KV cache. Built once per forward by
/// <see cref="CausalLM.Forward"/>; a checkpointed layer saves <see cref="Tensors"/> for its backward and rebuilds the
/// context from them (<see cref="WithTensors"/>).
/// </summary>
internal sealed class LayerContext
{
    private readonly ModelConfig _cfg;
    private readonly RopeSpec[] _ropeKeys;
    private readonly Tensor[] _cos, _sin;
    private readonly int?[] _maskKeys;
    private readonly Tensor?[] _masks;
    private readonly bool[] _causal;
    // Soft-capped models only (null elsewhere): per mask kind, the mask the soft-capped attention takes (the causal
    // one made here where MaskOf has none but causal), and its blocks' key spans, computed once for every layer.
    private readonly Tensor?[]? _softcapAllowed;
    private readonly SoftcapSpanCache[]? _spans;

    private LayerContext(ModelConfig cfg, RopeSpec[] ropeKeys, Tensor[] cos, Tensor[] sin, int?[] maskKeys, Tensor?[] masks, bool[] causal,
                         Tensor?[]? softcapAllowed, SoftcapSpanCache[]? spans, bool perRow, KvCache? cache)
    {
        _cfg = cfg;
        (_ropeKeys, _cos, _sin, _maskKeys, _masks, _causal) = (ropeKeys, cos, sin, maskKeys, masks, causal);
        _softcapAllowed = softcapAllowed;
        _spans = spans ?? softcapAllowed?.Select(_ => new SoftcapSpanCache()).ToArray();
        PerRowPositions = perRow;
        Cache = cache;
    }

    /// <summary>True when cos/sin are per token [B·T, d] (positions differ between rows: packed documents); false when
    /// every row shares positions and they are [T, d].</summary>
    public bool PerRowPositions { get; }

    public KvCache? Cache { get; }

    /// <summary>
    /// The context of one forward. <paramref name="positions"/>: int64 [T] shared by the rows, or [B, T] per row;
    /// <paramref name="keyValid"/>: bool [B, past + T] (true = a real token) or null; <paramref name="sequenceIds"/>:
    /// int64 [B, T] (tokens of different packed documents never attend to each other) or null.
    /// </summary>
    public static LayerContext Build(ModelConfig cfg, IReadOnlyDictionary<RopeSpec, RotaryEmbedding> ropes, Tensor positions, long sequenceLength,
                                     Tensor? keyValid, Tensor? sequenceIds, long past, long t, ScalarType dtype, KvCache? cache)
    {
        var perRow = positions.ndim == 2;
        var flat = positions.reshape(-1);
        var keys = ropes.Keys.ToArray();
        var cos = new Tensor[keys.Length];
        var sin = new Tensor[keys.Length];
        for (var i = 0; i < keys.Length; i++) (cos[i], sin[i]) = ropes[keys[i]].Tables(flat, sequenceLength, dtype);
        var windows = Enumerable.Range(0, cfg.NumHiddenLayers).Select(cfg.WindowOf).Distinct().ToArray();
        var masks = new Tensor?[windows.Length];
        var causal = new bool[windows.Length];
        for (var i = 0; i < windows.Length; i++) (masks[i], causal[i]) = BuildMask(keyValid, sequenceIds, windows[i], past, t, positions.device);
        // Soft-capped attention takes an explicit mask (it has no causal flag): the plain causal one, made once here
        // rather than by every layer.
        var softcapAllowed = cfg.AttentionSoftcap is null ? null
            : masks.Select((m, i) => m ?? (causal[i] ? CausalMask(t, past + t, positions.device) : null)).ToArray();
        return new LayerContext(cfg, keys, cos, sin, windows, masks, causal, softcapAllowed, null, perRow, cache);
    }

    public (Tensor Cos, Tensor Sin) RopeOf(int layer)
    {
        var i = Array.IndexOf(_ropeKeys, _cfg.RopeOf(layer));
        return (_cos[i], _sin[i]);
    }

    public (Tensor? Mask, bool Causal) MaskOf(int layer)
    {
        var i = Array.IndexOf(_maskKeys, _cfg.WindowOf(layer));
        return (_masks[i], _causal[i]);
    }

    /// <summary>A soft-capped model's layer: the mask its attention takes (bool [B|1, 1, T, L], or null for every key)
    /// and the cache of that mask's key spans, shared by the layers of its kind.</summary>
    public (Tensor? Allowed, SoftcapSpanCache Spans) SoftcapMaskOf(int layer)
    {
        if (_softcapAllowed is null || _spans is null) throw new InvalidOperationException("the model has no soft-capped attention");
        var i = Array.IndexOf(_maskKeys, _cfg.WindowOf(layer));
        return (_softcapAllowed[i], _spans[i]);
    }

    /// <summary>The context's tensors in a fixed order (for save_for_backward): the tables, the masks, then the causal
    /// masks made for soft-capped attention.</summary>
    public Tensor[] Tensors() => [.. _cos, .. _sin, .. _masks.Where(m => m is not null).Select(m => m!), .. MadeCausal()];

    private IEnumerable<Tensor> MadeCausal() =>
        _softcapAllowed is null ? [] : _softcapAllowed.Where((a, i) => a is not null && _masks[i] is null).Select(a => a!);

    /// <summary>The same context over <paramref name="saved"/> (as returned by <see cref="Tensors"/>), without a cache. The
    /// masks are the same values, so their key spans are this context's, shared (a checkpointed layer's recomputation
    /// reads none back from the device again).</summary>
    public LayerContext WithTensors(IList<Tensor> saved)
    {
        var n = _cos.Length;
        var cos = saved.Take(n).ToArray();
        var sin = saved.Skip(n).Take(n).ToArray();
        var masks = new Tensor?[_masks.Length];
        var k = 2 * n;
        for (var i = 0; i < masks.Length; i++) masks[i] = _masks[i] is null ? null : saved[k++];
        var allowed = _softcapAllowed is null ? null : new Tensor?[_softcapAllowed.Length];
        if (allowed is not null)
            for (var i = 0; i < allowed.Length; i++) allowed[i] = masks[i] ?? (_softcapAllowed![i] is null ? null : saved[k++]);
        return new LayerContext(_cfg, _ropeKeys, cos, sin, _maskKeys, masks, _causal, allowed, _spans, PerRowPositions, null);
    }

    /// <summary>No mask (causal or not) when nothing is padded or packed, the query block starts at 0 (or is one token)
    /// and no window bites; otherwise bool [B|1, 1, T, past + T]: key j is visible to query i when j ≤ past + i, within
    /// the window (j > past + i − W), a real token, and of the same packed document. A query that would see nothing
    /// (left padding) sees itself, so no row is fully masked (that would give NaN).</summary>
    internal static (Tensor? Mask, bool Causal) BuildMask(Tensor? keyValid, Tensor? sequenceIds, int? window, long past, long t, Device device)
    {
        var windowBites = window is { } w && past + t > w;
        if (keyValid is null && sequenceIds is null && !windowBites)
        {
            if (past == 0) return (null, t > 1);
            if (t == 1) return (null, false);
        }
        var q = arange(past, past + t, 1, ScalarType.Int64, device).unsqueeze(1);
        var k = arange(0, past + t, 1, ScalarType.Int64, device).unsqueeze(0);
        var allowed = k.le(q);
        if (windowBites) allowed = allowed & k.gt(q - window!.Value);
        allowed = allowed.unsqueeze(0);                                              // [1, T, L]
        if (keyValid is not null) allowed = allowed & keyValid.unsqueeze(1);         // [B, T, L]
        if (sequenceIds is not null) allowed = allowed & sequenceIds.unsqueeze(2).eq(sequenceIds.unsqueeze(1));
        var none = allowed.any(-1, keepdim: true).logical_not();
        allowed = allowed | (none & k.eq(q).unsqueeze(0));
        return (allowed.unsqueeze(1), false);
    }

    /// <summary>bool [1, 1, T, L]: the plain causal mask of a block of T queries ending at key L − 1.</summary>
    internal static Tensor CausalMask(long t, long l, Device device)
    {
        var q = arange(l - t, l, 1, ScalarType.Int64, device).unsqueeze(1);
        var k = arange(0, l, 1, ScalarType.Int64, device).unsqueeze(0);
        return k.le(q).unsqueeze(0).unsqueeze(0);
    }
}
