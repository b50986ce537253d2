using SlothSharp.Losses;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Training;

/// <summary>
/// The loss of a model on held-out <see cref="TrainingData"/> (the same rows, labels and document boundaries the
/// trainer would use), without training: the token-weighted mean cross-entropy over every trained target, in nats.
/// The model is switched to eval mode (no dropout) under no_grad and left in eval mode; the trainer switches it back
/// to training at its next step.
/// </summary>
public static class HeldOutLoss
{
    /// <param name="model">The model (with its adapters).</param>
    /// <param name="data">The held-out rows.</param>
    /// <param name="batchSize">Rows per forward pass.</param>
    /// <param name="chunkedLoss">Use the generic chunked LM-head loss instead of the fused kernel (as training does).</param>
    public static double Compute(CausalLM model, TrainingData data, int batchSize, bool chunkedLoss = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        model.eval();
        using var noGrad = no_grad();
        double sum = 0;
        long targets = 0;
        for (var start = 0; start < data.Rows.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var rows = Enumerable.Range(start, Math.Min(batchSize, data.Rows.Count - start)).ToArray();
            using var batch = data.CollateBatch(rows, model.Device);
            var hidden = batch.MultiDocument
                ? model.Forward(batch.InputIds, batch.AttentionMask, null, batch.PositionIds, batch.SequenceIds)
                : model.Forward(batch.InputIds, batch.AttentionMask);
            var loss = CausalLmLoss.Compute(model, hidden, batch.Labels, new CrossEntropyOptions { Reduction = LossReduction.Sum }, chunkedLoss);
            sum += loss.to(ScalarType.Float64).item<double>();
            targets += rows.Sum(r => (long)data.RowTargets[r]);
        }
        return targets == 0 ? double.NaN : sum / targets;
    }
}
