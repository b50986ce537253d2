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
        Generate(new CausalLmAdapter(model), promptIds, options);

    /// <summary>The ids generation stops at by default: config.json's eos_token_id and generation_config.json's.</summary>
    public static IReadOnlyList<int> DefaultStopTokenIds(CausalLM model) => CausalLmAdapter.StopIds(model);

    internal static IEnumerable<int> Generate(ICausalLm model, IReadOnlyList<int> promptIds, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(promptIds);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (promptIds.Count == 0) throw new ArgumentException("the prompt has no tokens (add BOS at least)", nameof(promptIds));
        for (var i = 0; i < promptIds.Count; i++)
            if (promptIds[i] < 0 || promptIds[i] >= model.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(promptIds), $"prompt token {i} is {promptIds[i]}, outside the vocabulary [0, {model.VocabSize})");
        if (promptIds.Count > model.MaxPositionEmbeddings)
            throw new ArgumentException($"the prompt has {promptIds.Count} tokens, more than max_position_embeddings ({model.MaxPositionEmbeddings})", nameof(promptIds));
        return Iterate(model, promptIds, options);
    }

    private static IEnumerable<int> Iterate(ICausalLm model, IReadOnlyList<int> promptIds, GenerationOptions options)
    {
        var stop = (options.StopTokenIds ?? model.EosTokenIds).ToHashSet();
        var limit = Math.Min(options.MaxNewTokens, model.MaxPositionEmbeddings - promptIds.Count);
        if (limit <= 0) yield break;
        var sampler = new TokenSampler(options);
        using var cache = model.NewKvCache(1, promptIds.Count + limit);
        var all = promptIds.Select(i => (long)i).ToList();
        var input = all.ToArray();
        var cached = 0;
        for (var produced = 0; produced < limit; produced++)
        {
            // longrope (Phi-3) switches to its long factors once the sequence passes original_max_position_embeddings;
            // as transformers' Phi-3 generation does, the cache is then recomputed once with the long factors.
            if (model.DynamicRopeLength is { } switchAt && cached > 0 && cached <= switchAt && cached + input.Length > switchAt)
            {
                model.ResetCache(cache);
                input = all.ToArray();
            }
            var next = Step(model, cache, input, sampler);
            cached = all.Count;
            all.Add(next);
            yield return next;
            if (stop.Contains(next)) yield break;
            input = [next];
        }
    }

    /// <summary>Runs the new tokens through the model (extending the cache) and picks the next id. Everything but the
    /// cache is released before the id is yielded.</summary>
    private static int Step(ICausalLm model, IDisposable cache, long[] input, TokenSampler sampler)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(input, ScalarType.Int64).reshape(1, input.Length).to(model.Device);
        var hidden = model.Forward(ids, null, cache);
        var last = hidden[0, -1];
        return sampler.Next(model.Logits(last.unsqueeze(0))[0]);
    }
}
