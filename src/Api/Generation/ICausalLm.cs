using static TorchSharp.torch;

namespace SlothSharp.Generation;

/// <summary>
/// What evaluation and generation need from a causal language model. <c>CausalLM</c> is adapted to it in
/// CausalLmAdapter.cs; tests use small fakes with the same contract.
/// </summary>
internal interface ICausalLm
{
    Device Device { get; }
    int VocabSize { get; }
    int MaxPositionEmbeddings { get; }
    IReadOnlyList<int> EosTokenIds { get; }
    /// <summary>The family's final logit soft-cap (Gemma 2), or null.</summary>
    double? FinalLogitSoftcap { get; }
    /// <summary>[V, H] in the compute dtype.</summary>
    Tensor LmHeadWeight { get; }
    /// <summary>Final hidden states [B, T, H]; attentionMask [B, T] (or [B, cached + T] with a cache) int64 (1 = token)
    /// or null; positionIds int64 [B, T] per row or null (then, with a cache, positions continue from the cached
    /// length). With a cache the cache is extended.</summary>
    Tensor Forward(Tensor inputIds, Tensor? attentionMask, IDisposable? cache, Tensor? positionIds = null);

    /// <summary>
    /// One decode step: ids int64 [B, 1] (one new token per row) at positions int64 [B, 1], attentionMask int64 [B, 1]
    /// (0 = a finished row's filler, never attended to later) or null, through the cache (extended by one slot) to
    /// float32 logits [B, V]. Every generation step goes through this one method, so a faster decode path (fused
    /// kernels, CUDA graphs) can replace it in an implementation without touching the generators. The default is
    /// <see cref="Forward"/> then <see cref="Logits"/> of the last position.
    /// </summary>
    Tensor DecodeLogits(Tensor ids, Tensor positions, Tensor? attentionMask, IDisposable cache) =>
        DecodeLogitsByForward(ids, positions, attentionMask, cache);

    /// <summary><see cref="DecodeLogits"/> through <see cref="Forward"/> and <see cref="Logits"/> (the reference path).</summary>
    Tensor DecodeLogitsByForward(Tensor ids, Tensor positions, Tensor? attentionMask, IDisposable cache)
    {
        using var scope = NewDisposeScope();
        var hidden = Forward(ids, attentionMask, cache, positions);
        return Logits(hidden.select(1, -1)).MoveToOuterDisposeScope();
    }

    /// <summary>A cache for <paramref name="batch"/> rows of <paramref name="maxLength"/> slots each. Left-padded
    /// batches may ask for more slots than max_position_embeddings (their positions stay below it).</summary>
    IDisposable NewKvCache(int batch, int maxLength);
    /// <summary>Forgets what a cache of <see cref="NewKvCache"/> holds.</summary>
    void ResetCache(IDisposable cache);
    /// <summary>The sequence length past which the RoPE frequencies change (longrope's original_max_position_embeddings),
    /// or null when they never do.</summary>
    int? DynamicRopeLength { get; }
    /// <summary>float32 logits [.., V] of hidden states.</summary>
    Tensor Logits(Tensor hidden);
}
