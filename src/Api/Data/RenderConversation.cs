using System.Text.Json.Nodes;

namespace SlothSharp.Data;

/// <summary>
/// A chat template: the text of <paramref name="messages"/> (with the row's <paramref name="tools"/>, null when none),
/// followed by the assistant's turn header when <paramref name="addGenerationPrompt"/>; as Hugging Face's
/// <c>apply_chat_template(messages, tools=tools, add_generation_prompt=..., tokenize=False)</c>. The text may start
/// with the BOS token's text (then no second BOS is added).
/// </summary>
public delegate string RenderConversation(JsonArray messages, JsonArray? tools, bool addGenerationPrompt);

/// <summary>Token ids of one example and which of them are trained.</summary>
/// <param name="Ids">The tokens.</param>
/// <param name="Trained">Same length: <c>Trained[j]</c> is true when token j is a target (predicted from the tokens
/// before it, so its label is kept); false means label -100. <c>Trained[0]</c> has no effect (nothing predicts it).</param>
/// <param name="Source">The example's origin, for errors.</param>
public sealed record TokenizedExample(int[] Ids, bool[] Trained, string Source = "example")
{
    /// <summary>Number of trained targets (positions 1.. with <see cref="Trained"/> set).</summary>
    public int Targets => Trained.Skip(1).Count(t => t);
}
