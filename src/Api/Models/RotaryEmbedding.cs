using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>
/// Rotary-embedding frequencies and cos/sin tables exactly as transformers computes them (float32 throughout, the same
/// operation order): inv_freq = 1 / θ^(arange(0, d, 2) / d) over the rotary features d, then the type's adjustment
/// (linear, llama3, yarn, longrope's short or long factors); cos/sin = cos/sin(position · inv_freq) duplicated over
/// both halves, times the attention factor, cast to the compute dtype.
/// </summary>
internal sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _invFreq;
    private readonly Tensor? _longInvFreq;

    public RotaryEmbedding(RopeSpec spec, int headDim, Device device)
    {
        Spec = spec;
        _invFreq = InverseFrequencies(spec, headDim, spec.ShortFactor).to(device).DetachFromDisposeScope();
        if (spec.Type == "longrope") _longInvFreq = InverseFrequencies(spec, headDim, spec.LongFactor).to(device).DetachFromDisposeScope();
    }

    public RopeSpec Spec { get; }

    /// <summary>inv_freq [d/2], float32 on the CPU. For longrope, <paramref name="extFactors"/> divides it.</summary>
    public static Tensor InverseFrequencies(RopeSpec s, int headDim, IReadOnlyList<double>? extFactors = null)
    {
        using var scope = NewDisposeScope();
        var dim = s.RotaryDim(headDim);
        if (s.Type == "longrope" && extFactors!.Count != dim / 2)
            throw new ArgumentException($"longrope has {extFactors.Count} factors; {dim} rotary features need {dim / 2}", nameof(extFactors));
        var exponent = arange(0, dim, 2, ScalarType.Int64).to(ScalarType.Float32) / dim;
        var posFreqs = tensor((float)s.Theta, ScalarType.Float32).pow(exponent);
        // Python's `scalar / tensor` is reciprocal(tensor) * scalar in PyTorch; written that way here.
        var invFreq = posFreqs.reciprocal();
        switch (s.Type)
        {
            case "linear":
                invFreq = invFreq / s.Factor;
                break;
            case "llama3":
            {
                double oldContext = s.OriginalMaxPositionEmbeddings;
                var lowFreqWavelen = oldContext / s.LowFreqFactor;
                var highFreqWavelen = oldContext / s.HighFreqFactor;
                var wavelen = invFreq.reciprocal() * (2 * Math.PI);
                // Long wavelengths are divided by the factor, short ones kept, the band between blended smoothly.
                var llama = where(wavelen > lowFreqWavelen, invFreq / s.Factor, invFreq);
                var smooth = (wavelen.reciprocal() * oldContext - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                var smoothed = (1 - smooth) * llama / s.Factor + smooth * llama;
                var medium = (wavelen < highFreqWavelen).logical_not() & (wavelen > lowFreqWavelen).logical_not();
                invFreq = where(medium, smoothed, llama);
                break;
            }
            case "yarn":
            {
                double CorrectionDim(double rotations) =>
                    dim * Math.Log(s.OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(s.Theta));
                var low = CorrectionDim(s.BetaFast);
                var high = CorrectionDim(s.BetaSlow);
                if (s.Truncate) (low, high) = (Math.Floor(low), Math.Ceiling(high));
                (low, high) = (Math.Max(low, 0), Math.Min(high, dim - 1));
                if (low == high) high += 0.001;  // no singularity
                var ramp = ((arange(dim / 2, ScalarType.Float32) - low) / (high - low)).clamp(0, 1);
                var extrapolationFactor = 1 - ramp;
                var interpolation = (posFreqs * s.Factor).reciprocal();
                invFreq = interpolation * (1 - extrapolationFactor) + invFreq * extrapolationFactor;
                break;
            }
            case "longrope":
            {
                var ext = tensor(extFactors!.Select(f => (float)f).ToArray(), ScalarType.Float32);
                invFreq = (ext * posFreqs).reciprocal();
                break;
            }
        }
        return invFreq.MoveToOuterDisposeScope();
    }

    /// <summary>cos and sin [N, d] in <paramref name="dtype"/> for the positions [N] (float32 or int64, on the device).
    /// <paramref name="sequenceLength"/> (the largest position + 1 of the forward) picks longrope's factors as
    /// transformers' dynamic update does: the long ones once it exceeds original_max_position_embeddings.</summary>
    public (Tensor Cos, Tensor Sin) Tables(Tensor positions, long sequenceLength, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var inv = _longInvFreq is not null && sequenceLength > Spec.OriginalMaxPositionEmbeddings ? _longInvFreq : _invFreq;
        var freqs = positions.to(ScalarType.Float32).unsqueeze(1) * inv.unsqueeze(0);
        var emb = cat([freqs, freqs], -1);
        var cos = emb.cos();
        var sin = emb.sin();
        if (Spec.AttentionFactor != 1)
        {
            cos = cos * Spec.AttentionFactor;
            sin = sin * Spec.AttentionFactor;
        }
        return (cos.to(dtype).MoveToOuterDisposeScope(), sin.to(dtype).MoveToOuterDisposeScope());
    }

    public void Dispose()
    {
        _invFreq.Dispose();
        _longInvFreq?.Dispose();
    }
}
