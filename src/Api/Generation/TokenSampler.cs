using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Generation;

/// <summary>
/// Picks the next token of every row of a batch of logits, on the logits' device (see <see cref="GenerationOptions"/>):
/// transformers' order — the repetition penalty (a logits processor, so it applies to greedy decoding too), then the
/// warpers temperature, top-k, top-p, then a draw from the softmax (inverse CDF of one uniform per row from a CPU generator seeded from Seed).
/// Only the chosen ids [B] cross to the host (one small read per step) and B uniforms to the device. Greedy (temperature 0) is the argmax with the
/// lowest id on ties. Draws depend on the batch: a prompt sampled alone and in a batch gets different (equally
/// distributed) tokens; the same seed and batch give the same tokens.
/// </summary>
internal sealed class TokenSampler : IDisposable
{
    private readonly GenerationOptions _options;
    private Generator? _generator;

    public TokenSampler(GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    /// <summary>True when the sampler needs each row's seen tokens (repetition penalty on).</summary>
    public bool NeedsHistory => _options.RepetitionPenalty != 1;

    /// <summary>
    /// The processed logits as float32 [B, V] on the logits' device: the repetition penalty applied to the tokens
    /// marked in <paramref name="seen"/> (bool [B, V], the prompt and the tokens generated so far; null = none) as
    /// transformers' RepetitionPenaltyLogitsProcessor (divided by the penalty when positive, multiplied when negative),
    /// then / temperature when sampling, then −∞ outside top-k and outside the top-p nucleus.
    /// </summary>
    public Tensor Warp(Tensor logits, Tensor? seen)
    {
        using var scope = NewDisposeScope();
        var z = Rows(logits).to(ScalarType.Float32);
        var penalty = _options.RepetitionPenalty;
        if (penalty != 1 && seen is not null)
        {
            if (!seen.shape.SequenceEqual(z.shape)) throw new ArgumentException($"seen must be [{z.shape[0]}, {z.shape[1]}] like the logits; got [{string.Join(", ", seen.shape)}]", nameof(seen));
            var penalized = where(z < 0, z * penalty, z / penalty);
            z = where(seen.to(ScalarType.Bool), penalized, z);
        }
        if (_options.Temperature == 0) return z.MoveToOuterDisposeScope();
        z = z / _options.Temperature;
        var v = z.shape[1];
        if (_options.TopK > 0 && _options.TopK < v)
        {
            // Ties with the k-th value are kept (as transformers' TopKLogitsWarper: < the k-th is removed).
            var kth = z.topk(_options.TopK, dim: 1).values.narrow(1, _options.TopK - 1, 1);
            z = z.masked_fill(z < kth, double.NegativeInfinity);
        }
        if (_options.TopP < 1)
        {
            // Ascending sort: drop the low tail whose cumulative probability stays within 1 − top_p, keeping the most
            // likely token in any case.
            var (sorted, order) = z.sort(dim: 1, descending: false);
            var cumulative = sorted.softmax(1).cumsum(1);
            var drop = cumulative <= 1 - _options.TopP;
            drop.narrow(1, v - 1, 1).fill_(false);
            var dropByToken = zeros_like(drop).scatter(1, order, drop);
            z = z.masked_fill(dropByToken, double.NegativeInfinity);
        }
        return z.MoveToOuterDisposeScope();
    }

    /// <summary>The next id of each row, int64 [B] on the logits' device. logits: [B, V] (or [V]) of any float dtype;
    /// seen: see <see cref="Warp"/>.</summary>
    public Tensor Choose(Tensor logits, Tensor? seen = null)
    {
        using var scope = NewDisposeScope();
        var z = Warp(logits, seen);
        if (_options.Temperature == 0) return z.argmax(1).MoveToOuterDisposeScope();
        // Inverse-CDF draw: one uniform per row from a CPU generator seeded from Seed (B floats cross to the device),
        // then the first token whose cumulative probability exceeds it. TorchSharp's generators are CPU-only, and this
        // also makes a seed draw the same tokens on the CPU and on a GPU (up to the float rounding of the sums).
        _generator ??= new Generator(unchecked((ulong)_options.Seed), CPU);
        var rows = z.shape[0];
        var cdf = z.softmax(1).cumsum(1);
        var u = rand([rows, 1], generator: _generator, dtype: ScalarType.Float32).to(z.device);
        var chosen = searchsorted(cdf, u * cdf.narrow(1, cdf.shape[1] - 1, 1), right: true);
        return chosen.clamp_max(cdf.shape[1] - 1).reshape(-1).MoveToOuterDisposeScope();
    }

    /// <summary>One row: logits [V] (or [1, V]) to the next id, without history (tests, single steps).</summary>
    public int Next(Tensor logits)
    {
        using var scope = NewDisposeScope();
        return (int)Choose(logits).cpu()[0].item<long>();
    }

    private static Tensor Rows(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        var z = logits.detach();
        return z.ndim switch
        {
            1 => z.unsqueeze(0),
            2 => z,
            _ => throw new ArgumentException($"logits must be [V] or [B, V]; got [{string.Join(", ", z.shape)}]", nameof(logits)),
        };
    }

    public void Dispose() => _generator?.Dispose();
}
