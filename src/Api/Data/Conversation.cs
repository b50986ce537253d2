using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SlothSharp.Data;

/// <summary>
/// Checks of a chat in the OpenAI / Hugging Face layout, before any template sees it, so a bad row fails with the file,
/// the row and the field named rather than as a template error or a silently odd render. Rules: roles are system,
/// developer, user, assistant or tool; system/developer only first; content is a string or a list of
/// <c>{"type": "text", "text": ...}</c> parts (may be missing only on an assistant message with tool calls);
/// turns alternate: user → assistant, assistant → user (or → tool when it made tool calls), tool → tool or
/// assistant; the first turn after the system prompt is the user's.
/// </summary>
public static class Conversation
{
    public static readonly IReadOnlySet<string> Roles = new HashSet<string> { "system", "developer", "user", "assistant", "tool" };

    /// <summary>The role of a message object, or null when it has none (or not a string).</summary>
    public static string? Role(JsonObject message) =>
        message["role"] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    /// <summary>The text of a message's content: the string, or its text parts joined; "" when absent.</summary>
    public static string ContentText(JsonObject message) => message["content"] switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        JsonArray parts => string.Concat(parts.Select(p => p?["text"]?.GetValue<string>() ?? "")),
        _ => "",
    };

    /// <summary>Throws an <see cref="InvalidDataException"/> naming <paramref name="source"/> and the field
    /// (<c>{field}[i].role</c> …) for the first rule broken.</summary>
    public static void Validate(JsonArray messages, string source, string field, bool requireAssistantLast)
    {
        InvalidDataException Error(string f, string message) => new($"{source}: field \"{f}\": {message}");
        if (messages.Count == 0) throw Error(field, "an empty conversation");
        string? previous = null;  // role of the previous message; "assistant+tools" after one that called tools
        for (var i = 0; i < messages.Count; i++)
        {
            var at = $"{field}[{i}]";
            if (messages[i] is not JsonObject m) throw Error(at, $"expected a message object, found {DatasetReader.Kind(messages[i])}");
            var roleNode = m["role"];
            if (roleNode is not JsonValue rv || rv.GetValueKind() != JsonValueKind.String)
                throw Error($"{at}.role", roleNode is null ? "missing" : $"must be a string, not {DatasetReader.Kind(roleNode)}");
            var role = rv.GetValue<string>();
            if (!Roles.Contains(role))
                throw Error($"{at}.role", $"unknown role \"{role}\" (expected one of {string.Join(", ", Roles)})");
            var toolCalls = m["tool_calls"];
            if (toolCalls is not null)
            {
                if (role != "assistant") throw Error($"{at}.tool_calls", $"only assistant messages make tool calls (this one is \"{role}\")");
                ValidateToolCalls(toolCalls, $"{at}.tool_calls", Error);
            }
            ValidateContent(m, at, role, toolCalls is not null, Error);
            if (role == "tool")
            {
                foreach (var key in (string[])["tool_call_id", "name"])
                    if (m[key] is { } n && (n is not JsonValue kv || kv.GetValueKind() != JsonValueKind.String))
                        throw Error($"{at}.{key}", $"must be a string, not {DatasetReader.Kind(n)}");
            }
            var expected = previous switch
            {
                null or "system" or "developer" => ["user"],
                "user" => ["assistant"],
                "assistant" => ["user"],
                "assistant+tools" => ["tool"],
                "tool" => new[] { "tool", "assistant" },
                _ => [],
            };
            if (role is "system" or "developer")
            {
                if (i != 0) throw Error($"{at}.role", $"a {role} message must come first (this is message {i})");
            }
            else if (!expected.Contains(role))
            {
                var after = previous is null ? "at the start" : $"after {(previous == "assistant+tools" ? "an assistant message with tool_calls" : $"a \"{previous}\" message")} ({field}[{i - 1}])";
                throw Error($"{at}.role", $"turns must alternate: \"{role}\" {after}; expected {string.Join(" or ", expected.Select(e => $"\"{e}\""))}");
            }
            previous = role == "assistant" && toolCalls is not null ? "assistant+tools" : role;
        }
        if (requireAssistantLast && previous != "assistant")
            throw Error($"{field}[{messages.Count - 1}].role", $"the conversation must end with an assistant reply (it ends with {(previous == "assistant+tools" ? "an assistant tool call without its result and answer" : $"a \"{previous}\" message")}): nothing after it would be trained");
    }

    private static void ValidateContent(JsonObject m, string at, string role, bool hasToolCalls, Func<string, string, InvalidDataException> error)
    {
        var content = m["content"];
        switch (content)
        {
            case null when role == "assistant" && hasToolCalls: return;
            case null: throw error($"{at}.content", m.ContainsKey("content") ? "null (only an assistant message with tool_calls may have no content)" : "missing");
            case JsonValue v when v.GetValueKind() == JsonValueKind.String: return;
            case JsonArray parts:
                for (var p = 0; p < parts.Count; p++)
                {
                    if (parts[p] is not JsonObject part) throw error($"{at}.content[{p}]", $"expected a content part object, found {DatasetReader.Kind(parts[p])}");
                    var type = part["type"] is JsonValue t && t.GetValueKind() == JsonValueKind.String ? t.GetValue<string>() : null;
                    if (type is not (null or "text"))
                        throw error($"{at}.content[{p}].type", $"\"{type}\" parts are not supported (text only)");
                    if (part["text"] is not JsonValue tv || tv.GetValueKind() != JsonValueKind.String)
                        throw error($"{at}.content[{p}].text", part["text"] is null ? "missing" : $"must be a string, not {DatasetReader.Kind(part["text"])}");
                }
                return;
            default: throw error($"{at}.content", $"must be a string or a list of text parts, not {DatasetReader.Kind(content)}");
        }
    }

    private static void ValidateToolCalls(JsonNode toolCalls, string at, Func<string, string, InvalidDataException> error)
    {
        if (toolCalls is not JsonArray calls || calls.Count == 0) throw error(at, "must be a non-empty list of tool calls");
        for (var c = 0; c < calls.Count; c++)
        {
            var ca = $"{at}[{c}]";
            if (calls[c] is not JsonObject call) throw error(ca, $"expected a tool call object, found {DatasetReader.Kind(calls[c])}");
            if (call["type"] is { } type && (type is not JsonValue tv || tv.GetValueKind() != JsonValueKind.String || tv.GetValue<string>() != "function"))
                throw error($"{ca}.type", "must be \"function\"");
            if (call["function"] is not JsonObject fn) throw error($"{ca}.function", "missing (expected {\"name\": ..., \"arguments\": ...})");
            if (fn["name"] is not JsonValue name || name.GetValueKind() != JsonValueKind.String || name.GetValue<string>().Length == 0)
                throw error($"{ca}.function.name", "must be a non-empty string");
            if (fn["arguments"] is { } args && args is not JsonObject && (args is not JsonValue av || av.GetValueKind() != JsonValueKind.String))
                throw error($"{ca}.function.arguments", $"must be an object or a JSON string, not {DatasetReader.Kind(args)}");
        }
    }

    /// <summary>The tool definitions: a list of objects (the template decides how to show them).</summary>
    public static void ValidateTools(JsonArray tools, string source, string field)
    {
        for (var i = 0; i < tools.Count; i++)
            if (tools[i] is not JsonObject)
                throw new InvalidDataException($"{source}: field \"{field}[{i}]\": expected a tool definition object, found {DatasetReader.Kind(tools[i])}");
    }

    /// <summary>Messages with null-valued keys removed (Parquet structs and HF datasets fill absent struct fields with
    /// null; a template testing <c>message.tool_calls is defined</c> must not see them).</summary>
    internal static JsonArray WithoutNulls(JsonArray messages, string source, string field)
    {
        var result = new JsonArray();
        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i] is not JsonObject m)
                throw new InvalidDataException($"{source}: field \"{field}[{i}]\": expected a message object, found {DatasetReader.Kind(messages[i])}");
            var copy = new JsonObject();
            foreach (var (k, v) in m)
                if (v is not null && !(v is JsonValue jv && jv.GetValueKind() == JsonValueKind.Null)) copy[k] = v.DeepClone();
            result.Add(copy);
        }
        return result;
    }

    internal static string Describe(JsonArray messages) =>
        new StringBuilder().AppendJoin(", ", messages.Select(m => m is JsonObject o ? Role(o) ?? "?" : "?")).ToString();
}
