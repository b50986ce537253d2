using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Generation;

/// <summary>
/// Autoregressive generation with a KV cache: the prompt is run once, then one token per step. New ids are yielded as
/// they are chosen (streaming); see <see cref="GenerationOptions"/> for decoding and stopping. Generation also stops
/// when the sequence reaches the model's max_position_embeddings.
/// </summary>
public static class TextGenerator
{
    /// <summary>Generates after <paramref name="promptIds"/> (which should start with BOS), yielding each new id as it
    /// is chosen. Default stop ids: config.json's eos_token_id and generation_config.json's. Arguments are checked
    /// when called; the model runs while the result is enumerated.</summary>
    public static IEnumerable<int> Generate(CausalLM model, IReadOnlyList<int> promptIds, GenerationOptions options) =>
        Generate(CausalLmAdapter.For(model, options), promptIds, options!);

    /// <summary>The ids generation stops at by default: config.json's eos_token_id and generation_config.json's.</summary>
    public static IReadOnlyList<int> DefaultStopTokenIds(CausalLM model) => CausalLmAdapter.StopIds(model);

    internal static IEnumerable<int> Generate(ICausalLm model, IReadOnlyList<int> promptIds, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(promptIds);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        PromptChecks.Check(model, promptIds, "the prompt", nameof(promptIds));
        return Iterate(model, promptIds, options);
    }

    private static IEnumerable<int> Iterate(ICausalLm model, IReadOnlyList<int> promptIds, GenerationOptions options)
    {
        var stop = (options.StopTokenIds ?? model.EosTokenIds).ToHashSet();
        var limit = Math.Min(options.MaxNewTokens, model.MaxPositionEmbeddings - promptIds.Count);
        if (limit <= 0) yield break;
        using var sampler = new TokenSampler(options);
        using var cache = model.NewKvCache(1, promptIds.Count + limit);
        using var seen = sampler.NeedsHistory ? TokenHistory.FromPrompts([promptIds], model.VocabSize, model.Device) : null;
        var all = promptIds.Select(i => (long)i).ToList();
        var input = all.ToArray();
        var cached = 0;
        for (var produced = 0; produced < limit; produced++)
        {
            // longrope (Phi-3) switches to its long factors once the sequence passes original_max_position_embeddings;
            // the cache is then recomputed once with the long factors, so every step equals a full forward over the
            // whole sequence. (transformers' Phi-3 generation means to do the same; 5.17's feeds the newest token alone
            // from there on instead: tests/Models/LongRopeGenerationTests.cs.)
            if (model.DynamicRopeLength is { } switchAt && cached > 0 && cached <= switchAt && cached + input.Length > switchAt)
            {
                model.ResetCache(cache);
                input = all.ToArray();
                cached = 0;
            }
            var next = Step(model, cache, input, cached, sampler, seen);
            cached += input.Length;
            all.Add(next);
            yield return next;
            if (stop.Contains(next)) yield break;
            input = [next];
        }
    }

    /// <summary>Runs the new tokens through the model (extending the cache) and picks the next id: the prompt (or a
    /// recomputed sequence) as one forward, then one token per step through <see cref="ICausalLm.DecodeLogits"/>.
    /// Everything but the cache and the history is released before the id is yielded.</summary>
    private static int Step(ICausalLm model, IDisposable cache, long[] input, int cached, TokenSampler sampler, Tensor? seen)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(input, ScalarType.Int64).reshape(1, input.Length).to(model.Device);
        var logits = cached == 0
            ? model.Logits(model.Forward(ids, null, cache).select(1, -1))
            : model.DecodeLogits(ids, tensor(new long[] { cached }, ScalarType.Int64).reshape(1, 1).to(model.Device), null, cache);
        var chosen = sampler.Choose(logits, seen);
        if (seen is not null) TokenHistory.Add(seen, chosen);
        return (int)chosen.cpu().item<long>();
    }
}
