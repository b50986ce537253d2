using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Generation;

/// <summary>
/// Generation for many prompts at once. Prompts are sorted by length and cut into batches of batchSize (less padding);
/// each batch is left-padded into one [B, T] input (attention mask 0 on padding; each row's positions count its own
/// tokens from 0, as transformers derives them from the mask: cumsum − 1, padding clamped to 0) with one preallocated
/// KV cache, run through the model once (prefill), then one token per step for all rows through
/// <see cref="ICausalLm.DecodeLogits"/>, sampled on the device (<see cref="TokenSampler"/>). Each prompt stops on its
/// own (a stop id, MaxNewTokens, max_position_embeddings).
/// <para>A finished row stays in the batch and is fed a filler token with attention mask 0 (never attended to) until
/// the batch ends, instead of shrinking the batch: shrinking would copy every layer's cache at each finish, and fixed
/// shapes are what a faster decode step (fused kernels, CUDA graphs) wants. The cost is the finished rows' share of
/// each remaining step, which sorting by length keeps small.</para>
/// <para>Greedy output per prompt equals <see cref="TextGenerator"/>'s for that prompt alone (up to float rounding of
/// the batched kernels); sampled output depends on the batch (one generator draws for all rows). Models whose RoPE
/// changes with the sequence length (longrope) generate prompts that would cross the switch one at a time through
/// <see cref="TextGenerator"/>, since a batch shares one set of frequencies.</para>
/// </summary>
public static class BatchGenerator
{
    /// <summary>Generates for every prompt (each should start with BOS), streaming (prompt index, token id) events as
    /// tokens are chosen; within a batch, one event per unfinished prompt per step. A prompt that can produce no token
    /// (MaxNewTokens 0, or already at max_position_embeddings) gets no event. Arguments are checked when called; the
    /// model runs while the result is enumerated.</summary>
    public static IEnumerable<GeneratedToken> Stream(CausalLM model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, int batchSize = 16) =>
        Stream(CausalLmAdapter.For(model, options), prompts, options!, batchSize);

    /// <summary>Runs <see cref="Stream(CausalLM, IReadOnlyList{IReadOnlyList{int}}, GenerationOptions, int)"/> to the end
    /// and returns each prompt's result in input order; <paramref name="onToken"/> sees each event as it comes.</summary>
    public static IReadOnlyList<GenerationResult> Generate(CausalLM model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
                                                           int batchSize = 16, Action<GeneratedToken>? onToken = null) =>
        Generate(CausalLmAdapter.For(model, options), prompts, options!, batchSize, onToken);

    internal static IReadOnlyList<GenerationResult> Generate(ICausalLm model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
                                                             int batchSize = 16, Action<GeneratedToken>? onToken = null)
    {
        var events = Stream(model, prompts, options, batchSize);
        var tokens = prompts.Select(_ => new List<int>()).ToArray();
        var finish = new FinishReason[prompts.Count];
        Array.Fill(finish, FinishReason.Length);
        foreach (var e in events)
        {
            tokens[e.PromptIndex].Add(e.TokenId);
            if (e.Finish is { } f) finish[e.PromptIndex] = f;
            onToken?.Invoke(e);
        }
        return tokens.Select((t, i) => new GenerationResult(i, t, finish[i])).ToList();
    }

    internal static IEnumerable<GeneratedToken> Stream(ICausalLm model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be >= 1");
        for (var i = 0; i < prompts.Count; i++) PromptChecks.Check(model, prompts[i], $"prompt {i}", nameof(prompts));
        return Iterate(model, prompts, options, batchSize);
    }

    private static IEnumerable<GeneratedToken> Iterate(ICausalLm model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, int batchSize)
    {
        var stop = (options.StopTokenIds ?? model.EosTokenIds).ToHashSet();
        int Limit(int p) => Math.Min(options.MaxNewTokens, model.MaxPositionEmbeddings - prompts[p].Count);
        var order = Enumerable.Range(0, prompts.Count).Where(p => Limit(p) > 0).OrderBy(p => prompts[p].Count).ToList();  // stable
        if (model.DynamicRopeLength is { } switchAt)
        {
            foreach (var p in order.Where(p => prompts[p].Count + Limit(p) > switchAt).ToList())
            {
                order.Remove(p);
                var produced = 0;
                var limit = Limit(p);
                foreach (var id in TextGenerator.Generate(model, prompts[p], options))
                {
                    produced++;
                    FinishReason? finish = stop.Contains(id) ? FinishReason.Stop : produced == limit ? FinishReason.Length : null;
                    yield return new GeneratedToken(p, id, finish);
                }
            }
        }
        using var sampler = new TokenSampler(options);
        for (var start = 0; start < order.Count; start += batchSize)
        {
            var rows = order.GetRange(start, Math.Min(batchSize, order.Count - start)).ToArray();
            foreach (var e in RunBatch(model, prompts, rows, rows.Select(Limit).ToArray(), stop, sampler)) yield return e;
        }
    }

    /// <summary>One batch: <paramref name="rows"/> are prompt indices, <paramref name="limits"/> their token budgets (≥ 1).</summary>
    private static IEnumerable<GeneratedToken> RunBatch(ICausalLm model, IReadOnlyList<IReadOnlyList<int>> prompts, int[] rows, int[] limits,
                                                        HashSet<int> stop, TokenSampler sampler)
    {
        var b = rows.Length;
        var lengths = rows.Select(r => prompts[r].Count).ToArray();
        var width = lengths.Max();
        // The filler for padding and finished rows: masked out, so any id inside the vocabulary will do.
        const long filler = 0;
        using var cache = model.NewKvCache(b, width + limits.Max() - 1);
        using var seen = sampler.NeedsHistory ? TokenHistory.FromPrompts(rows.Select(r => prompts[r]).ToArray(), model.VocabSize, model.Device) : null;
        long[] chosen;
        using (no_grad())
        using (NewDisposeScope())
        {
            var ids = new long[b * width];
            var mask = new long[b * width];
            var positions = new long[b * width];
            for (var r = 0; r < b; r++)
            {
                var pad = width - lengths[r];
                for (var c = 0; c < width; c++)
                {
                    var inside = c >= pad;
                    ids[r * width + c] = inside ? prompts[rows[r]][c - pad] : filler;
                    mask[r * width + c] = inside ? 1 : 0;
                    positions[r * width + c] = inside ? c - pad : 0;  // cumsum(mask) − 1, padding clamped to 0
                }
            }
            var hidden = model.Forward(Upload(ids, b, width, model.Device), Upload(mask, b, width, model.Device), cache, Upload(positions, b, width, model.Device));
            // Left padding: the last column is every row's last prompt token.
            chosen = Choose(sampler, model.Logits(hidden.select(1, -1)), seen);
        }

        var produced = new int[b];
        var done = new bool[b];
        var nextPosition = lengths.Select(l => (long)l).ToArray();
        var events = new List<GeneratedToken>(b);
        while (true)
        {
            events.Clear();
            for (var r = 0; r < b; r++)
            {
                if (done[r]) continue;
                var id = (int)chosen[r];
                produced[r]++;
                nextPosition[r]++;
                FinishReason? finish = stop.Contains(id) ? FinishReason.Stop : produced[r] == limits[r] ? FinishReason.Length : null;
                done[r] = finish is not null;
                events.Add(new GeneratedToken(rows[r], id, finish));
            }
            foreach (var e in events) yield return e;
            if (done.All(d => d)) yield break;
            using (no_grad())
            using (NewDisposeScope())
            {
                // ids, positions and mask of the step in one upload: [3, B].
                var step = new long[3 * b];
                for (var r = 0; r < b; r++)
                {
                    step[r] = done[r] ? filler : chosen[r];
                    step[b + r] = done[r] ? 0 : nextPosition[r] - 1;
                    step[2 * b + r] = done[r] ? 0 : 1;
                }
                var packed = Upload(step, 3, b, model.Device);
                var logits = model.DecodeLogits(packed[0].reshape(b, 1), packed[1].reshape(b, 1), packed[2].reshape(b, 1), cache);
                chosen = Choose(sampler, logits, seen);
            }
        }
    }

    private static Tensor Upload(long[] values, long rows, long cols, Device device) =>
        tensor(values, ScalarType.Int64).reshape(rows, cols).to(device);

    /// <summary>Picks each row's next id on the device, records it in the history, and reads the [B] ids back (the
    /// step's one host read).</summary>
    private static long[] Choose(TokenSampler sampler, Tensor logits, Tensor? seen)
    {
        var ids = sampler.Choose(logits, seen);
        if (seen is not null) TokenHistory.Add(seen, ids);
        return ids.cpu().data<long>().ToArray();
    }
}
