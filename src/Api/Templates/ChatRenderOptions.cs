using System.Text.Json.Nodes;

namespace SlothSharp.Templates;

/// <summary>What <see cref="ChatTemplate.Render(JsonArray, ChatRenderOptions?)"/> passes to the template besides
/// the messages, mirroring apply_chat_template's arguments.</summary>
public sealed record ChatRenderOptions
{
    /// <summary>Append the header of an assistant turn (add_generation_prompt), for generation.</summary>
    public bool AddGenerationPrompt { get; init; }

    /// <summary>Tool definitions (JSON schemas, usually <c>{"type": "function", "function": {...}}</c>); null passes
    /// <c>tools=None</c> as transformers does.</summary>
    public JsonArray? Tools { get; init; }

    /// <summary>RAG documents; null passes <c>documents=None</c>.</summary>
    public JsonArray? Documents { get; init; }

    /// <summary>Extra template variables (apply_chat_template's **kwargs), e.g. <c>enable_thinking</c>. They override
    /// special tokens of the same name; <c>messages</c>, <c>tools</c>, <c>documents</c> and
    /// <c>add_generation_prompt</c> are reserved.</summary>
    public IReadOnlyDictionary<string, JsonNode?>? Variables { get; init; }

    /// <summary>The clock <c>strftime_now</c> reads; the system clock when null.</summary>
    public TimeProvider? Clock { get; init; }
}
