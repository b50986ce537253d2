using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// The soft-capped attention blocks' key spans (<see cref="SoftcapAttentionFunction.KeySpans"/>) of one mask, per block
/// size, computed on first use. Each computation reads a few numbers back from the device, which waits for everything
/// queued before it: a decoder's layers share one mask per kind (full, sliding window), so they share its spans through
/// one cache held by the forward's <see cref="Models.LayerContext"/> instead of each layer stalling the stream again.
/// Bound to one mask for its lifetime; the caller passes that mask each time.
/// </summary>
internal sealed class SoftcapSpanCache
{
    private readonly Dictionary<(long T, long L, long Rows), (long Start, long Count)[]> _spans = [];
    private readonly Lock _lock = new();

    /// <summary>The spans of <paramref name="allowed"/> [B|1, H|1, t, l] for blocks of <paramref name="rows"/> query rows.</summary>
    public (long Start, long Count)[] Get(Tensor allowed, long t, long l, long rows)
    {
        lock (_lock)
        {
            if (!_spans.TryGetValue((t, l, rows), out var spans))
                _spans[(t, l, rows)] = spans = SoftcapAttentionFunction.KeySpans(allowed, t, l, rows);
            return spans;
        }
    }

    /// <summary>How many span computations ran (tests).</summary>
    internal int Computed
    {
        get { lock (_lock) return _spans.Count; }
    }
}
