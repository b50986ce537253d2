using SlothSharp.Losses;
using static TorchSharp.torch;

namespace SlothSharp.References;

/// <summary>
/// GRPO from full logits and ordinary autograd: the tests' reference and the benchmarks' naive baseline (what a
/// TorchSharp user writes: full logits, float32 upcast, log_softmax + gather). (Compiled into tests and bench from
/// references/.)
/// </summary>
internal static class GrpoReference
{
    /// <summary>hidden [B, T, H], weight [V, H], ids int64 [B, T], mask [B, T], advantages [B], old and reference
    /// log-probs [B, T]. Uses Temperature, EpsilonLow/High, Beta, Normalization, MaxCompletionLength and
    /// GlobalNormalizer of <paramref name="o"/>.</summary>
    public static Tensor Loss(Tensor hidden, Tensor weight, Tensor ids, Tensor mask, Tensor advantages, Tensor oldLogProbs,
                              Tensor refLogProbs, GrpoOptions o)
    {
        var logits = hidden.matmul(weight.t()).to(ScalarType.Float32);
        if (o.Temperature != 1.0) logits = logits / o.Temperature;
        var logp = logits.log_softmax(-1).gather(2, ids.unsqueeze(2)).squeeze(2);
        var ratio = (logp - oldLogProbs).exp();
        var a = advantages.unsqueeze(1);
        var pg = minimum(ratio * a, ratio.clamp(1 - o.EpsilonLow, 1 + o.EpsilonHigh) * a).neg();
        var d = refLogProbs - logp;
        var m = mask.to(ScalarType.Float32);
        var t = (pg + (d.exp() - d - 1) * o.Beta) * m;
        var (b, tt) = (hidden.shape[0], hidden.shape[1]);
        return o.Normalization switch
        {
            GrpoNormalization.Grpo => (t.sum(dim: 1) / m.sum(dim: 1).clamp_min(1)).mean(),
            GrpoNormalization.Bnpo => t.sum() / m.sum().clamp_min(1),
            GrpoNormalization.DrGrpo => t.sum() / (double)(b * (o.MaxCompletionLength ?? tt)),
            _ => t.sum() / o.GlobalNormalizer!.Value,
        };
    }
}
