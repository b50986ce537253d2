using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>How GRPO turns masked per-token losses into one number.</summary>
public enum GrpoNormalization
{
    /// <summary>Mean over each sequence's completion tokens, then mean over sequences (the GRPO paper).</summary>
    Grpo,
    /// <summary>Sum over all completion tokens ÷ their count.</summary>
    Bnpo,
    /// <summary>Sum ÷ (B × max completion length) (Dr. GRPO).</summary>
    DrGrpo,
    /// <summary>Sum ÷ a global normalizer given by the caller, e.g. the token count of the whole accumulated batch (DAPO).</summary>
    Dapo,
}

/// <summary>Options of <see cref="GrpoLoss.Compute"/>.</summary>
public sealed record GrpoOptions : ChunkOptions
{
    public double EpsilonLow { get; init; } = 0.2;
    public double EpsilonHigh { get; init; } = 0.2;
    /// <summary>Weight of the k3 KL estimate against the reference policy (needs reference log-probs). 0 = off.</summary>
    public double Beta { get; init; }
    public double Temperature { get; init; } = 1.0;
    public double Softcap { get; init; }
    public GrpoNormalization Normalization { get; init; } = GrpoNormalization.Grpo;
    /// <summary><see cref="GrpoNormalization.DrGrpo"/>: the max completion length (default: T).</summary>
    public long? MaxCompletionLength { get; init; }
    /// <summary><see cref="GrpoNormalization.Dapo"/>: the divisor (required).</summary>
    public double? GlobalNormalizer { get; init; }
    /// <summary>true: log-probs from the fused kernel; false: through the generic chunked function.</summary>
    public bool UseFusedKernel { get; init; } = true;
}

/// <summary>The loss and its metrics (detached). Dispose to free them.</summary>
public sealed record GrpoResult(Tensor Loss, Tensor MeanKl, Tensor ClipFraction, Tensor TokenLogProbs) : IDisposable
{
    public void Dispose()
    {
        Loss.Dispose();
        MeanKl.Dispose();
        ClipFraction.Dispose();
        TokenLogProbs.Dispose();
    }
}

/// <summary>
/// GRPO's clipped policy-gradient loss from hidden states, without the B × T × V logits. Per token:
/// r = exp(logp − logp_old), pg = −min(r·A, clip(r, 1 − ε_low, 1 + ε_high)·A),
/// k3 = exp(ref − logp) − (ref − logp) − 1, loss_t = pg + β·k3, masked by the completion mask and normalized.
/// </summary>
public static class GrpoLoss
{
    /// <summary>
    /// hidden [B, T, H] (policy's last hidden states at the positions that predict each completion token), weight [V, H],
    /// bias [V] or null, completionIds int64 [B, T], completionMask [B, T] (bool or 0/1), advantages [B],
    /// oldLogProbs [B, T] or null (= detached current), refLogProbs [B, T] or null (needed when β > 0).
    /// </summary>
    public static GrpoResult Compute(Tensor hidden, Tensor weight, Tensor? bias, Tensor completionIds, Tensor completionMask,
                                     Tensor advantages, Tensor? oldLogProbs = null, Tensor? refLogProbs = null, GrpoOptions? options = null)
    {
        options ??= new GrpoOptions();
        ArgumentNullException.ThrowIfNull(completionMask);
        ArgumentNullException.ThrowIfNull(advantages);
        if (hidden.ndim != 3) throw new ArgumentException($"hidden must be [B, T, H]; got [{string.Join(", ", hidden.shape)}]", nameof(hidden));
        var (b, t) = (hidden.shape[0], hidden.shape[1]);
        void CheckBT(Tensor? x, string name)
        {
            if (x is not null && !x.shape.SequenceEqual([b, t]))
                throw new ArgumentException($"{name} must be [{b}, {t}]; got [{string.Join(", ", x.shape)}]", name);
        }
        CheckBT(completionIds, nameof(completionIds));
        CheckBT(completionMask, nameof(completionMask));
        CheckBT(oldLogProbs, nameof(oldLogProbs));
        CheckBT(refLogProbs, nameof(refLogProbs));
        if (!advantages.shape.SequenceEqual([b])) throw new ArgumentException($"advantages must be [{b}]; got [{string.Join(", ", advantages.shape)}]", nameof(advantages));
        if (options.Beta > 0 && refLogProbs is null) throw new ArgumentException("Beta > 0 needs refLogProbs", nameof(refLogProbs));
        if (options.EpsilonLow < 0 || options.EpsilonHigh < 0) throw new ArgumentOutOfRangeException(nameof(options), "clip epsilons must be >= 0");
        if (options.Normalization == GrpoNormalization.Dapo && !(options.GlobalNormalizer > 0))
            throw new ArgumentException("GrpoNormalization.Dapo needs GlobalNormalizer > 0", nameof(options));

        using var scope = NewDisposeScope();
        var mask = completionMask.to(ScalarType.Float32);
        // Masked positions are ignored rows: no GEMM, no gradient.
        const long ignore = -100;
        var ids = where(completionMask.to(ScalarType.Bool), completionIds, full_like(completionIds, ignore));
        var logp = options.UseFusedKernel
            ? FusedLinearCrossEntropy.TokenLogProbs(hidden, weight, bias, ids, options.Temperature, options.Softcap, ignore, options)
            : ChunkedLinearLoss.Apply(hidden, weight, bias, ids, ChunkLosses.TokenLogProb(1.0 / options.Temperature, options.Softcap, ignore),
                new ChunkedLossOptions { Reduction = LossReduction.None, ChunkRows = options.ChunkRows, ChunkBytes = options.ChunkBytes });
        var old = oldLogProbs?.to(ScalarType.Float32) ?? logp.detach();
        var ratio = (logp - old).exp();
        var adv = advantages.to(ScalarType.Float32).unsqueeze(1);
        var clipped = ratio.clamp(1 - options.EpsilonLow, 1 + options.EpsilonHigh);
        var perToken = minimum(ratio * adv, clipped * adv).neg();
        Tensor? k3 = null;
        if (refLogProbs is not null)
        {
            var d = refLogProbs.to(ScalarType.Float32) - logp;
            k3 = d.exp() - d - 1;
            if (options.Beta > 0) perToken = perToken + k3 * options.Beta;
        }
        var masked = perToken * mask;
        var tokens = mask.sum();
        var loss = options.Normalization switch
        {
            GrpoNormalization.Grpo => (masked.sum(dim: 1) / mask.sum(dim: 1).clamp_min(1)).mean(),
            GrpoNormalization.Bnpo => masked.sum() / tokens.clamp_min(1),
            GrpoNormalization.DrGrpo => masked.sum() / (double)(b * (options.MaxCompletionLength ?? t)),
            _ => masked.sum() / options.GlobalNormalizer!.Value,
        };
        Tensor meanKl, clipFraction;
        using (no_grad())
        {
            meanKl = k3 is null ? zeros([], ScalarType.Float32, hidden.device) : (k3 * mask).sum() / tokens.clamp_min(1);
            var isClipped = ratio.lt(1 - options.EpsilonLow).logical_and(adv.lt(0))
                .logical_or(ratio.gt(1 + options.EpsilonHigh).logical_and(adv.gt(0)));
            clipFraction = (isClipped.to(ScalarType.Float32) * mask).sum() / tokens.clamp_min(1);
        }
        var result = new GrpoResult(loss, meanKl, clipFraction, logp.detach());
        result.Loss.MoveToOuterDisposeScope();
        result.MeanKl.MoveToOuterDisposeScope();
        result.ClipFraction.MoveToOuterDisposeScope();
        result.TokenLogProbs.MoveToOuterDisposeScope();
        return result;
    }
}
