namespace SlothSharp.Generation;

/// <summary>Why a prompt's generation ended: a stop token (yielded as its last token), or a limit (MaxNewTokens or
/// max_position_embeddings).</summary>
public enum FinishReason { Stop, Length }

/// <summary>One streamed event of <see cref="BatchGenerator.Stream(Models.CausalLM, IReadOnlyList{IReadOnlyList{int}}, GenerationOptions, int)"/>:
/// prompt <paramref name="PromptIndex"/> (its index in the input list) got <paramref name="TokenId"/>;
/// <paramref name="Finish"/> is set on its last token.</summary>
public readonly record struct GeneratedToken(int PromptIndex, int TokenId, FinishReason? Finish);

/// <summary>What one prompt produced: its new ids (a stop token included, as <see cref="TextGenerator"/> yields it)
/// and why it ended.</summary>
public sealed record GenerationResult(int PromptIndex, IReadOnlyList<int> TokenIds, FinishReason FinishReason);
