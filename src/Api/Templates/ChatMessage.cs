using System.Text.Json.Nodes;

namespace SlothSharp.Templates;

/// <summary>A chat message for the typed <see cref="ChatTemplate.Render(IEnumerable{ChatMessage}, ChatRenderOptions?)"/>
/// overload. Null members are left out of the message object the template sees (so <c>message.name is defined</c> is
/// false), which is what a Python dict without that key gives.</summary>
public sealed record ChatMessage(string Role, string? Content)
{
    public string? ReasoningContent { get; init; }
    public string? Name { get; init; }
    public string? ToolCallId { get; init; }
    public IReadOnlyList<ChatToolCall>? ToolCalls { get; init; }

    public static ChatMessage System(string content) => new("system", content);
    public static ChatMessage User(string content) => new("user", content);
    public static ChatMessage Assistant(string content) => new("assistant", content);
    public static ChatMessage Tool(string content, string? toolCallId = null) => new("tool", content) { ToolCallId = toolCallId };

    public JsonObject ToJson()
    {
        var obj = new JsonObject { ["role"] = Role, ["content"] = Content };
        if (ReasoningContent is not null) obj["reasoning_content"] = ReasoningContent;
        if (Name is not null) obj["name"] = Name;
        if (ToolCallId is not null) obj["tool_call_id"] = ToolCallId;
        if (ToolCalls is not null) obj["tool_calls"] = new JsonArray(ToolCalls.Select(c => (JsonNode?)c.ToJson()).ToArray());
        return obj;
    }
}
