using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace SlothSharp.Chat;

/// <summary>Turns Microsoft.Extensions.AI messages into the message objects a chat template renders
/// (<c>{"role": ..., "content": "..."}</c>). Only text travels: the templates SlothSharp renders take string content,
/// and the model reads nothing else, so any other content kind is refused instead of being dropped silently.</summary>
internal static class ChatPrompt
{
    private static readonly string[] Roles = ["system", "user", "assistant", "tool"];

    /// <param name="messages">The conversation, in order.</param>
    /// <param name="instructions"><c>ChatOptions.Instructions</c>: added to the leading system message, or made one.</param>
    /// <exception cref="ArgumentException">No messages, a null message, or a role other than system, user,
    /// assistant and tool.</exception>
    /// <exception cref="NotSupportedException">A message holds content other than <see cref="TextContent"/>.</exception>
    public static JsonArray ToTemplateMessages(IEnumerable<ChatMessage> messages, string? instructions)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var result = new JsonArray();
        var index = 0;
        foreach (var message in messages)
        {
            if (message is null) throw new ArgumentException($"message {index} is null", nameof(messages));
            var role = message.Role.Value;
            if (!Roles.Contains(role, StringComparer.Ordinal))
                throw new ArgumentException($"message {index}: role '{role}' is not supported (system, user, assistant or tool)", nameof(messages));
            var text = new StringBuilder();
            foreach (var content in message.Contents)
            {
                if (content is TextContent t) text.Append(t.Text);
                else
                    throw new NotSupportedException(
                        $"message {index} ({role}): {content?.GetType().Name ?? "null"} content is not supported; SlothChatClient passes text only " +
                        "(TextContent) to the model's chat template");
            }
            result.Add(new JsonObject { ["role"] = role, ["content"] = text.ToString() });
            index++;
        }
        if (result.Count == 0) throw new ArgumentException("no messages: a conversation needs at least one", nameof(messages));
        if (!string.IsNullOrEmpty(instructions))
        {
            if (result[0]!["role"]!.GetValue<string>() == "system")
            {
                var existing = result[0]!["content"]!.GetValue<string>();
                result[0]!["content"] = existing.Length == 0 ? instructions : existing + "\n\n" + instructions;
            }
            else result.Insert(0, new JsonObject { ["role"] = "system", ["content"] = instructions });
        }
        return result;
    }
}
