using System.Globalization;

namespace SlothSharp.Models;

/// <summary>
/// Rotary position embeddings of one kind of attention layer, as transformers computes them: the inverse frequencies
/// of the first int(head_dim · <see cref="PartialRotaryFactor"/>) features of each head (the rest pass through
/// unrotated), their scaling (<see cref="Type"/>: default, linear, llama3, yarn, longrope) and the factor
/// cos/sin are multiplied by (<see cref="AttentionFactor"/>: yarn and longrope). Fields a type does not use are 0/null.
/// </summary>
public sealed record RopeSpec(string Type, double Theta, double PartialRotaryFactor = 1, double Factor = 1, double LowFreqFactor = 0,
                              double HighFreqFactor = 0, int OriginalMaxPositionEmbeddings = 0, double AttentionFactor = 1,
                              double BetaFast = 32, double BetaSlow = 1, bool Truncate = true,
                              IReadOnlyList<double>? ShortFactor = null, IReadOnlyList<double>? LongFactor = null)
{
    /// <summary>Plain RoPE with base <paramref name="theta"/>.</summary>
    public static RopeSpec Default(double theta, double partialRotaryFactor = 1) => new("default", theta, partialRotaryFactor);

    /// <summary>The rotated features of a head of <paramref name="headDim"/> (transformers' int(head_dim · factor)).</summary>
    public int RotaryDim(int headDim) => (int)(headDim * PartialRotaryFactor);

    /// <summary>True when the frequencies depend on the sequence length (longrope switches to its long factors once
    /// a position reaches original_max_position_embeddings).</summary>
    public bool IsDynamic => Type == "longrope";

    public bool Equals(RopeSpec? other) =>
        other is not null && Type == other.Type && Theta == other.Theta && PartialRotaryFactor == other.PartialRotaryFactor && Factor == other.Factor &&
        LowFreqFactor == other.LowFreqFactor && HighFreqFactor == other.HighFreqFactor &&
        OriginalMaxPositionEmbeddings == other.OriginalMaxPositionEmbeddings && AttentionFactor == other.AttentionFactor &&
        BetaFast == other.BetaFast && BetaSlow == other.BetaSlow && Truncate == other.Truncate &&
        Same(ShortFactor, other.ShortFactor) && Same(LongFactor, other.LongFactor);

    public override int GetHashCode() => HashCode.Combine(Type, Theta, PartialRotaryFactor, Factor, OriginalMaxPositionEmbeddings, AttentionFactor);

    private static bool Same(IReadOnlyList<double>? a, IReadOnlyList<double>? b) =>
        a is null ? b is null : b is not null && a.SequenceEqual(b);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Type} θ {Theta}{(Factor != 1 ? $" ×{Factor}" : "")}{(PartialRotaryFactor != 1 ? $", partial {PartialRotaryFactor}" : "")}");
}
