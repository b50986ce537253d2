namespace SlothSharp.Generation;

/// <summary>The checks every generator makes on a prompt before the model runs (so a bad id is an exception here, not
/// a device-side assert).</summary>
internal static class PromptChecks
{
    /// <summary>Throws naming <paramref name="what"/> (e.g. "the prompt", "prompt 3") when the ids are empty, outside
    /// the vocabulary or longer than max_position_embeddings.</summary>
    public static void Check(ICausalLm model, IReadOnlyList<int>? ids, string what, string paramName)
    {
        if (ids is null) throw new ArgumentNullException(paramName, $"{what} is null");
        if (ids.Count == 0) throw new ArgumentException($"{what} has no tokens (add BOS at least)", paramName);
        for (var i = 0; i < ids.Count; i++)
            if (ids[i] < 0 || ids[i] >= model.VocabSize)
                throw new ArgumentOutOfRangeException(paramName, $"{what}: token {i} is {ids[i]}, outside the vocabulary [0, {model.VocabSize})");
        if (ids.Count > model.MaxPositionEmbeddings)
            throw new ArgumentException($"{what} has {ids.Count} tokens, more than max_position_embeddings ({model.MaxPositionEmbeddings})", paramName);
    }
}
