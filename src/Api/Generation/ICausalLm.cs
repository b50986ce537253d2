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
    /// <summary>Final hidden states [B, T, H]; attentionMask [B, T] int64 (1 = token) or null; with a cache, positions
    /// continue from the cached length and the cache is extended.</summary>
    Tensor Forward(Tensor inputIds, Tensor? attentionMask, IDisposable? cache);
    IDisposable NewKvCache(int batch, int maxLength);
    /// <summary>Forgets what a cache of <see cref="NewKvCache"/> holds.</summary>
    void ResetCache(IDisposable cache);
    /// <summary>The sequence length past which the RoPE frequencies change (longrope's original_max_position_embeddings),
    /// or null when they never do.</summary>
    int? DynamicRopeLength { get; }
    /// <summary>float32 logits [.., V] of hidden states.</summary>
    Tensor Logits(Tensor hidden);
}
