namespace SlothSharp.Data;

/// <summary>The layout of a dataset's rows (<see cref="DatasetExamples"/>).</summary>
public enum DatasetFormat
{
    /// <summary>Detected from the first rows' fields (see <see cref="DatasetExamples.Detect"/>).</summary>
    Auto,
    /// <summary><c>{"text": "..."}</c>: plain documents.</summary>
    Text,
    /// <summary><c>{"messages": [{"role", "content"}, ...], "tools"?: [...]}</c> (OpenAI / Hugging Face chat).</summary>
    Messages,
    /// <summary><c>{"conversations": [{"from", "value"}, ...], "system"?, "tools"?}</c>: from human/gpt/system/
    /// tool/function_call/observation.</summary>
    ShareGpt,
    /// <summary><c>{"instruction", "input"?, "output", "system"?}</c>.</summary>
    Alpaca,
    /// <summary><c>{"prompt", "completion"}</c>: both strings, or both lists of messages (conversational, as TRL
    /// accepts them).</summary>
    PromptCompletion,
}

/// <summary>Which tokens of an example are trained (get a label); the rest are context (label -100).</summary>
public enum TrainOn
{
    /// <summary>Assistant replies for conversations, the completion for prompt/completion, everything for text.</summary>
    Default,
    /// <summary>Every token (prompts, system and user turns included).</summary>
    All,
    /// <summary>Every assistant reply of a conversation (with the template's end-of-turn); the completion of a
    /// prompt/completion example.</summary>
    Assistant,
    /// <summary>Only the last assistant reply of a conversation; the completion of a prompt/completion example.</summary>
    LastAssistant,
}
