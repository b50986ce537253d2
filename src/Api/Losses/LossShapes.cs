using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>Argument checks shared by the LM-head losses.</summary>
internal static class LossShapes
{
    /// <summary>Checks hidden [N, H] or [B, T, H], weight [V, H], bias [V], targets with leading dims of hidden;
    /// returns (N, H, V).</summary>
    public static (long N, long H, long V) Check(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets, bool targetsAreLabels)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(targets);
        if (hidden.ndim is not (2 or 3))
            throw new ArgumentException($"hidden must be [N, H] or [B, T, H]; got [{string.Join(", ", hidden.shape)}]", nameof(hidden));
        if (weight.ndim != 2 || weight.shape[1] != hidden.shape[^1])
            throw new ArgumentException($"weight must be [V, {hidden.shape[^1]}]; got [{string.Join(", ", weight.shape)}]", nameof(weight));
        if (!TensorInterop.IsFloating16Or32(hidden.dtype))
            throw new ArgumentException($"hidden must be float32, float16 or bfloat16; got {hidden.dtype}", nameof(hidden));
        if (weight.dtype != hidden.dtype)
            throw new ArgumentException($"weight dtype {weight.dtype} differs from hidden dtype {hidden.dtype}", nameof(weight));
        TensorInterop.RequireSameDevice(hidden, nameof(hidden), weight, nameof(weight));
        TensorInterop.RequireSameDevice(hidden, nameof(hidden), targets, nameof(targets));
        if (bias is not null)
        {
            if (bias.ndim != 1 || bias.shape[0] != weight.shape[0])
                throw new ArgumentException($"bias must be [{weight.shape[0]}]; got [{string.Join(", ", bias.shape)}]", nameof(bias));
            if (bias.dtype != hidden.dtype) throw new ArgumentException($"bias dtype {bias.dtype} differs from hidden dtype {hidden.dtype}", nameof(bias));
            TensorInterop.RequireSameDevice(hidden, nameof(hidden), bias, nameof(bias));
        }
        var lead = hidden.shape[..^1];
        if (targets.ndim < lead.Length || !targets.shape[..lead.Length].SequenceEqual(lead))
            throw new ArgumentException($"targets must start with the leading dimensions [{string.Join(", ", lead)}] of hidden; got [{string.Join(", ", targets.shape)}]", nameof(targets));
        if (targetsAreLabels && (targets.dtype != ScalarType.Int64 || targets.ndim != lead.Length))
            throw new ArgumentException($"labels must be int64 [{string.Join(", ", lead)}]; got {targets.dtype} [{string.Join(", ", targets.shape)}]", nameof(targets));
        return (lead.Aggregate(1L, (a, b) => a * b), hidden.shape[^1], weight.shape[0]);
    }

    public static void CheckNormalizer(LossReduction reduction, double? normalizer)
    {
        if (normalizer is null) return;
        if (reduction != LossReduction.Mean)
            throw new ArgumentException("Normalizer applies to LossReduction.Mean only", nameof(normalizer));
        if (!(normalizer > 0) || double.IsInfinity(normalizer.Value))
            throw new ArgumentOutOfRangeException(nameof(normalizer), normalizer, "must be finite and > 0");
    }

    /// <summary>Labels outside [0, V) that are not ignore_index: one device reduction and a host read.</summary>
    public static void CheckLabelRange(Tensor labels, long vocab, long ignoreIndex)
    {
        using var scope = NewDisposeScope();
        var bad = labels.ne(ignoreIndex).logical_and(labels.lt(0).logical_or(labels.ge(vocab)));
        if (!bad.any().item<bool>()) return;
        var first = bad.flatten().nonzero()[0, 0].item<long>();
        var value = labels.flatten()[first].item<long>();
        throw new ArgumentOutOfRangeException(nameof(labels), value,
            $"label {value} at flat index {first} is outside [0, {vocab}) and is not ignore_index ({ignoreIndex})");
    }
}
