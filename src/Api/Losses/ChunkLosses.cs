using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>Chunk losses for <see cref="ChunkedLinearLoss.Apply"/>. Each returns one float32 value per row.</summary>
public static class ChunkLosses
{
    /// <summary>Cross-entropy per row with ignore_index (0 for ignored rows), label smoothing, softcap, logit scale and
    /// z-loss, exactly as <see cref="CrossEntropyOptions"/> defines them. targets: int64 labels [rows].</summary>
    public static ChunkLoss CrossEntropy(CrossEntropyOptions options)
    {
        options.Validate();
        return (logits, labels) =>
        {
            var z = Transform(logits, options.LogitScale, options.Softcap);
            var lse = z.logsumexp(-1);
            var valid = labels.ne(options.IgnoreIndex);
            var zy = z.gather(1, labels.clamp(0, z.shape[1] - 1).unsqueeze(1)).squeeze(1);
            var eps = options.LabelSmoothing;
            var loss = (lse - zy) * (1 - eps);
            if (eps > 0) loss = loss + (lse - z.mean([-1])) * eps;
            if (options.ZLoss > 0) loss = loss + lse.square() * options.ZLoss;
            return where(valid, loss, zeros_like(loss));
        };
    }

    /// <summary>z-loss alone: coefficient · lse² per row (targets unused but for ignore_index).</summary>
    public static ChunkLoss ZLoss(double coefficient, long ignoreIndex = -100) => (logits, labels) =>
    {
        var lse = logits.logsumexp(-1);
        return where(labels.ne(ignoreIndex), lse.square() * coefficient, zeros_like(lse));
    };

    /// <summary>Log-probability of the target token, z[y] − logsumexp(z) per row (0 where ignored): the building
    /// block of RL losses. z = logitScale · logits, then the optional softcap.</summary>
    public static ChunkLoss TokenLogProb(double logitScale = 1.0, double softcap = 0, long ignoreIndex = -100) => (logits, labels) =>
    {
        var z = Transform(logits, logitScale, softcap);
        var logp = z.gather(1, labels.clamp(0, z.shape[1] - 1).unsqueeze(1)).squeeze(1) - z.logsumexp(-1);
        return where(labels.ne(ignoreIndex), logp, zeros_like(logp));
    };

    /// <summary>
    /// Distillation: KL(p_teacher ‖ p_student) per row at temperature τ, times τ² (Hinton et al.). The teacher's logits
    /// are made chunk by chunk from its frozen head: targets are the teacher's hidden states [rows, Ht] and
    /// <paramref name="teacherWeight"/> is [V, Ht] (no gradient flows to the teacher).
    /// </summary>
    public static ChunkLoss DistillationKL(Tensor teacherWeight, Tensor? teacherBias = null, double temperature = 1.0)
    {
        ArgumentNullException.ThrowIfNull(teacherWeight);
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "must be > 0");
        return (logits, teacherHidden) =>
        {
            Tensor teacherLogp;
            using (no_grad())
                teacherLogp = nn.functional.linear(teacherHidden.to(teacherWeight.dtype), teacherWeight, teacherBias)
                    .to(ScalarType.Float32).div(temperature).log_softmax(-1);
            var studentLogp = logits.div(temperature).log_softmax(-1);
            return (teacherLogp.exp() * (teacherLogp - studentLogp)).sum(dim: -1) * (temperature * temperature);
        };
    }

    internal static Tensor Transform(Tensor logits, double scale, double softcap)
    {
        var z = scale == 1.0 ? logits : logits * scale;
        return softcap > 0 ? (z / softcap).tanh() * softcap : z;
    }
}
