using static TorchSharp.torch;

namespace SlothSharp.Data;

/// <summary>
/// One micro-batch of <see cref="Training.TrainingData.CollateBatch"/>: B rows right-padded to width W. Every tensor
/// is int64 [B, W].
/// </summary>
/// <param name="InputIds">Token ids; the pad id on padding.</param>
/// <param name="AttentionMask">1 on real tokens, 0 on padding; null when no row is padded.</param>
/// <param name="Labels">The token id where it is a trained target, else -100 (padding, untrained prompt tokens, and
/// the first token of every document in a row, so nothing predicts across a boundary). Unshifted: the loss pairs
/// position t's output with label t+1.</param>
/// <param name="PositionIds">Position of each token within its document segment: 0, 1, … restarting at every packed
/// document (an unpacked row: 0..n−1); 0 on padding. Feed to RoPE instead of arange(W).</param>
/// <param name="SequenceIds">Which document segment of its row each token belongs to: 0, 1, …; -1 on padding. Causal
/// attention must also require equal sequence ids (query i attends to key j only when j ≤ i and
/// SequenceIds[i] == SequenceIds[j]), which makes the mask block-diagonal; padding forms its own block, so no real
/// token sees it and no padded query row is empty.</param>
/// <param name="MultiDocument">True when some row holds more than one segment: only then does the model need the
/// block-diagonal mask (else plain causal attention with <paramref name="AttentionMask"/> is the same).</param>
/// <param name="Tokens">Real (non-padding) tokens of the batch.</param>
/// <param name="Targets">Trained targets of the batch (labels ≠ -100, the first position of each row excluded).</param>
public sealed record TrainingBatch(Tensor InputIds, Tensor? AttentionMask, Tensor Labels, Tensor PositionIds, Tensor SequenceIds,
                                   bool MultiDocument, long Tokens, long Targets) : IDisposable
{
    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask?.Dispose();
        Labels.Dispose();
        PositionIds.Dispose();
        SequenceIds.Dispose();
    }
}
