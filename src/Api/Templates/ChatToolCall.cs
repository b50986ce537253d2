using System.Text.Json.Nodes;

namespace SlothSharp.Templates;

/// <summary>One tool call of an assistant message, in OpenAI/transformers shape:
/// <c>{"id": ..., "type": "function", "function": {"name": ..., "arguments": {...}}}</c>. Arguments are usually a JSON
/// object (transformers' convention); some templates also accept a JSON string.</summary>
public sealed record ChatToolCall(string Name, JsonNode? Arguments, string? Id = null)
{
    public JsonObject ToJson()
    {
        var call = new JsonObject();
        if (Id is not null) call["id"] = Id;
        call["type"] = "function";
        call["function"] = new JsonObject { ["name"] = Name, ["arguments"] = Arguments?.DeepClone() };
        return call;
    }
}
