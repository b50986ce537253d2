using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SlothSharp.Cli;

/// <summary>One request of a `sloth generate --prompts` file: plain text to continue, or a conversation to answer.</summary>
/// <param name="Line">1-based line in the file (for messages about it).</param>
/// <param name="Text">The "prompt" text, or null.</param>
/// <param name="Messages">The "messages" array (rendered with the chat template and the generation prompt), or null.</param>
internal sealed record PromptRequest(int Line, string? Text, JsonArray? Messages);

/// <summary>
/// Reads a .jsonl prompts file: one JSON object per line with "prompt" (a string) or "messages" (an array of
/// {"role": string, "content": string} objects); blank lines are skipped. Every problem is a <see cref="CliException"/>
/// naming the file, the line and the field, found before the model is loaded.
/// </summary>
internal static class PromptsFile
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static IReadOnlyList<PromptRequest> Read(string path)
    {
        if (!File.Exists(path)) throw new CliException(path, Directory.Exists(path) ? "is a folder, not a file" : "file not found");
        string[] lines;
        try { lines = File.ReadAllLines(path, StrictUtf8); }
        catch (DecoderFallbackException) { throw new CliException(path, "not valid UTF-8"); }
        var requests = new List<PromptRequest>();
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            if (string.IsNullOrWhiteSpace(line)) continue;
            var at = $"line {i + 1}";
            JsonNode? node;
            try { node = JsonNode.Parse(line); }
            catch (JsonException e) { throw new CliException(path, $"{at}: not valid JSON ({CliErrors.Clean(e.Message)})"); }
            if (node is not JsonObject o) throw new CliException(path, $"{at}: expected a JSON object with \"prompt\" or \"messages\"");
            var hasPrompt = o.ContainsKey("prompt");
            var hasMessages = o.ContainsKey("messages");
            if (hasPrompt == hasMessages)
                throw new CliException(path, $"{at}: expected exactly one of the fields \"prompt\" and \"messages\"");
            if (hasPrompt)
            {
                if (o["prompt"] is not JsonValue v || !v.TryGetValue<string>(out var text))
                    throw new CliException(path, $"{at}: field \"prompt\": expected a string");
                if (text.Length == 0) throw new CliException(path, $"{at}: field \"prompt\": is empty");
                requests.Add(new PromptRequest(i + 1, text, null));
                continue;
            }
            if (o["messages"] is not JsonArray messages || messages.Count == 0)
                throw new CliException(path, $"{at}: field \"messages\": expected a non-empty array of {{\"role\", \"content\"}} objects");
            for (var m = 0; m < messages.Count; m++)
            {
                if (messages[m] is not JsonObject message)
                    throw new CliException(path, $"{at}: field \"messages\"[{m}]: expected an object with \"role\" and \"content\"");
                foreach (var field in new[] { "role", "content" })
                    if (message[field] is not JsonValue fv || !fv.TryGetValue<string>(out _))
                        throw new CliException(path, $"{at}: field \"messages\"[{m}].{field}: expected a string");
            }
            requests.Add(new PromptRequest(i + 1, null, (JsonArray)messages.DeepClone()));
        }
        if (requests.Count == 0) throw new CliException(path, "no prompts (one JSON object per line)");
        return requests;
    }
}
