using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Generation;

/// <summary>Picks the next token from one row of logits (see <see cref="GenerationOptions"/>).</summary>
internal sealed class TokenSampler
{
    private readonly GenerationOptions _options;
    private readonly Generator? _generator;

    public TokenSampler(GenerationOptions options)
    {
        options.Validate();
        _options = options;
        // Sampling runs on the CPU with its own generator so the draws do not depend on the device or global state.
        if (options.Temperature > 0) _generator = new Generator(unchecked((ulong)options.Seed), CPU);
    }

    /// <summary>logits: [V] (any float dtype, any device).</summary>
    public int Next(Tensor logits)
    {
        using var scope = NewDisposeScope();
        // Greedy: argmax where the logits are (only the index crosses to the host).
        if (_generator is null) return (int)logits.detach().reshape(-1).argmax().item<long>();
        var z = logits.detach().to(ScalarType.Float32).cpu().reshape(-1);
        z = z / _options.Temperature;
        var v = z.shape[0];
        if (_options.TopK > 0 && _options.TopK < v)
        {
            var kth = z.topk(_options.TopK).values[-1];
            z = z.masked_fill(z < kth, double.NegativeInfinity);
        }
        if (_options.TopP < 1)
        {
            // Ascending sort: drop the low tail whose cumulative probability stays within 1 − top_p, keeping the
            // most likely token in any case.
            var (sorted, order) = z.sort(descending: false);
            var cumulative = sorted.softmax(0).cumsum(0);
            var drop = cumulative <= 1 - _options.TopP;
            drop[-1] = false;
            var dropByToken = zeros(v, ScalarType.Bool).scatter(0, order, drop);
            z = z.masked_fill(dropByToken, double.NegativeInfinity);
        }
        var probs = z.softmax(0);
        return (int)multinomial(probs, 1, false, _generator).item<long>();
    }
}
