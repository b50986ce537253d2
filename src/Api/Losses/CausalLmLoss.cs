using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>
/// The causal-LM loss, in one place for the trainer, the distributed step, the evaluator and the benchmarks: position t
/// predicts token t + 1 (hidden[:, :-1] against labels[:, 1:]), labels equal to the options' IgnoreIndex (−100) are
/// skipped, the reduction and normalizer are the options' (a step's global target count with gradient accumulation),
/// and the logits are computed chunk by chunk inside the LM-head loss — <see cref="FusedLinearCrossEntropy"/>, or
/// <see cref="ChunkedLinearLoss"/> with <c>chunked</c> — with the model family's final logit soft-cap (Gemma 2) applied
/// there, so the [tokens × vocab] logits never exist.
/// </summary>
public static class CausalLmLoss
{
    /// <summary>The loss of <paramref name="model"/>'s hidden states [B, T, H] against labels int64 [B, T].</summary>
    public static Tensor Compute(CausalLM model, Tensor hidden, Tensor labels, CrossEntropyOptions? options = null, bool chunked = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Compute(hidden, model.LmHeadWeight, model.Config.FinalLogitSoftcap, labels, options, chunked);
    }

    /// <summary>The same for a given LM head [V, H] and final soft-cap (null: none).</summary>
    public static Tensor Compute(Tensor hidden, Tensor headWeight, double? finalSoftcap, Tensor labels, CrossEntropyOptions? options = null,
                                 bool chunked = false)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(headWeight);
        ArgumentNullException.ThrowIfNull(labels);
        if (hidden.ndim != 3 || labels.ndim != 2 || labels.shape[0] != hidden.shape[0] || labels.shape[1] != hidden.shape[1])
            throw new ArgumentException($"hidden must be [B, T, H] and labels [B, T]; got [{string.Join(", ", hidden.shape)}] and [{string.Join(", ", labels.shape)}]");
        var t = hidden.shape[1];
        if (t < 2) throw new ArgumentException("rows need at least 2 tokens (a target needs a previous token)", nameof(hidden));
        var o = options ?? new CrossEntropyOptions();
        if (finalSoftcap is { } cap && o.Softcap == 0) o = o with { Softcap = cap };
        using var scope = NewDisposeScope();
        var h = hidden.narrow(1, 0, t - 1);
        var y = labels.narrow(1, 1, t - 1);
        var loss = chunked ? ChunkedLinearLoss.CrossEntropy(h, headWeight, null, y, o) : FusedLinearCrossEntropy.Apply(h, headWeight, null, y, o);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>How many tokens of labels [B, T] are predicted (labels[:, 1:] not equal to <paramref name="ignoreIndex"/>).</summary>
    public static long Targets(Tensor labels, long ignoreIndex = -100)
    {
        ArgumentNullException.ThrowIfNull(labels);
        using var scope = NewDisposeScope();
        return labels.narrow(1, 1, labels.shape[1] - 1).ne(ignoreIndex).sum().item<long>();
    }
}
