using System.Text.Json.Nodes;

namespace SlothSharp.Data;

/// <summary>What a <see cref="TrainingExample"/> holds.</summary>
public enum ExampleKind
{
    /// <summary><see cref="TrainingExample.Text"/>: a plain document.</summary>
    Text,
    /// <summary><see cref="TrainingExample.Messages"/> (+ <see cref="TrainingExample.Tools"/>): a chat.</summary>
    Conversation,
    /// <summary><see cref="TrainingExample.Prompt"/> + <see cref="TrainingExample.Completion"/> as strings.</summary>
    PromptCompletion,
    /// <summary><see cref="TrainingExample.Messages"/> = prompt messages, <see cref="TrainingExample.CompletionMessages"/>
    /// = the completion's (assistant) messages; rendered with the chat template.</summary>
    ConversationalPromptCompletion,
}

/// <summary>
/// One training example in a format-independent form: a text, a conversation (messages in the OpenAI / Hugging Face
/// chat layout: role, content as a string or a list of text parts, assistant <c>tool_calls</c>, <c>tool</c> results
/// with <c>tool_call_id</c>/<c>name</c>; plus the row's <c>tools</c> list for the template), or a prompt/completion
/// pair. Build them with the factory methods, which validate; <see cref="Source"/> names the file and row for errors.
/// </summary>
public sealed class TrainingExample
{
    private TrainingExample(ExampleKind kind, string source)
    {
        Kind = kind;
        Source = source;
    }

    public ExampleKind Kind { get; }
    /// <summary>"file: line 3" (or a caller's label): prefixes every error about this example.</summary>
    public string Source { get; }
    public string? Text { get; private init; }
    /// <summary>The conversation (or the prompt messages of a conversational prompt/completion).</summary>
    public JsonArray? Messages { get; private init; }
    /// <summary>The tool (function) definitions the chat template shows the model; null when the row has none.</summary>
    public JsonArray? Tools { get; private init; }
    public string? Prompt { get; private init; }
    public string? Completion { get; private init; }
    public JsonArray? CompletionMessages { get; private init; }

    public static TrainingExample FromText(string text, string source = "example")
    {
        ArgumentNullException.ThrowIfNull(text);
        return new TrainingExample(ExampleKind.Text, source) { Text = text };
    }

    /// <summary>A conversation, validated by <see cref="Conversation.Validate"/> (errors name
    /// <paramref name="source"/> and the field, e.g. <c>messages[3].role</c>).</summary>
    public static TrainingExample FromMessages(JsonArray messages, JsonArray? tools = null, string source = "example", string field = "messages")
    {
        ArgumentNullException.ThrowIfNull(messages);
        Conversation.Validate(messages, source, field, requireAssistantLast: true);
        if (tools is not null) Conversation.ValidateTools(tools, source, "tools");
        return new TrainingExample(ExampleKind.Conversation, source) { Messages = messages, Tools = tools };
    }

    public static TrainingExample FromPromptCompletion(string prompt, string completion, string source = "example")
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(completion);
        if (completion.Length == 0) throw new InvalidDataException($"{source}: field \"completion\": empty: nothing to train");
        return new TrainingExample(ExampleKind.PromptCompletion, source) { Prompt = prompt, Completion = completion };
    }

    /// <summary>Conversational prompt/completion: the prompt messages end with a user (or tool) turn, the completion
    /// holds the assistant message(s) that answer it.</summary>
    public static TrainingExample FromPromptCompletion(JsonArray prompt, JsonArray completion, JsonArray? tools = null, string source = "example")
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(completion);
        Conversation.Validate(prompt, source, "prompt", requireAssistantLast: false);
        if (completion.Count == 0) throw new InvalidDataException($"{source}: field \"completion\": empty list: nothing to train");
        for (var i = 0; i < completion.Count; i++)
            if (completion[i] is not JsonObject m || Conversation.Role(m) != "assistant")
                throw new InvalidDataException($"{source}: field \"completion[{i}].role\": a completion holds assistant messages only");
        // The whole exchange must be a valid conversation (alternation across the prompt/completion boundary).
        var whole = new JsonArray([.. prompt.Select(n => n?.DeepClone()), .. completion.Select(n => n?.DeepClone())]);
        Conversation.Validate(whole, source, "prompt+completion", requireAssistantLast: true);
        if (tools is not null) Conversation.ValidateTools(tools, source, "tools");
        return new TrainingExample(ExampleKind.ConversationalPromptCompletion, source)
        {
            Messages = prompt, CompletionMessages = completion, Tools = tools,
        };
    }
}
