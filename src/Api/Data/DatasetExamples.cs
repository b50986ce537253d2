using System.Text.Json;
using System.Text.Json.Nodes;

namespace SlothSharp.Data;

/// <summary>
/// Turns dataset rows into <see cref="TrainingExample"/>s: the format is detected from the first rows' fields (or
/// forced), each row is converted and validated, and every problem is an <see cref="InvalidDataException"/> naming the
/// file, the row and the field.
/// </summary>
public static class DatasetExamples
{
    /// <summary>How many leading rows detection looks at (all must agree).</summary>
    public const int DetectionRows = 16;

    /// <summary>Reads <paramref name="path"/> (<see cref="DatasetReader"/>) and converts its rows.</summary>
    public static IReadOnlyList<TrainingExample> Load(string path, DatasetFormat format = DatasetFormat.Auto) =>
        FromRows(DatasetReader.Read(path), format);

    public static IReadOnlyList<TrainingExample> FromRows(IReadOnlyList<DatasetRow> rows, DatasetFormat format = DatasetFormat.Auto)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0) throw new ArgumentException("no rows", nameof(rows));
        if (format == DatasetFormat.Auto) format = Detect(rows);
        return rows.Select(r => ToExample(r, format)).ToList();
    }

    /// <summary>The format of the first <see cref="DetectionRows"/> rows, by their fields: <c>messages</c> →
    /// Messages; <c>conversations</c> → ShareGPT when its messages have <c>from</c>, Messages when they have
    /// <c>role</c>; <c>prompt</c> or <c>completion</c> → PromptCompletion; <c>instruction</c> or <c>output</c> →
    /// Alpaca (a missing partner field is then reported as missing); <c>text</c> → Text.</summary>
    public static DatasetFormat Detect(IReadOnlyList<DatasetRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        DatasetFormat? first = null;
        DatasetRow? firstRow = null;
        foreach (var row in rows.Take(DetectionRows))
        {
            var f = DetectRow(row.Data) ?? throw new InvalidDataException(
                $"{row.Where}: the fields ({string.Join(", ", row.Data.Select(kv => $"\"{kv.Key}\""))}) match no dataset format: expected \"text\", " +
                "\"messages\" (role/content), \"conversations\" (ShareGPT from/value), \"instruction\"+\"output\" (Alpaca) or \"prompt\"+\"completion\"; " +
                "or name the format explicitly");
            if (first is null) (first, firstRow) = (f, row);
            else if (f != first)
                throw new InvalidDataException($"{row.Where}: looks like {f} but {firstRow!.Location} looks like {first}: a dataset has one format (name it explicitly to force one)");
        }
        return first!.Value;
    }

    private static DatasetFormat? DetectRow(JsonObject row)
    {
        if (row["messages"] is JsonArray) return DatasetFormat.Messages;
        if (row["conversations"] is JsonArray conv)
            return conv.FirstOrDefault() is JsonObject m && m.ContainsKey("role") && !m.ContainsKey("from") ? DatasetFormat.Messages : DatasetFormat.ShareGpt;
        if (row.ContainsKey("prompt") || row.ContainsKey("completion")) return DatasetFormat.PromptCompletion;
        if (row.ContainsKey("instruction") || row.ContainsKey("output")) return DatasetFormat.Alpaca;
        if (row.ContainsKey("text")) return DatasetFormat.Text;
        return null;
    }

    /// <summary>One row in <paramref name="format"/> (not Auto) as an example.</summary>
    public static TrainingExample ToExample(DatasetRow row, DatasetFormat format)
    {
        ArgumentNullException.ThrowIfNull(row);
        return format switch
        {
            DatasetFormat.Text => TrainingExample.FromText(RequiredString(row, "text"), row.Where),
            DatasetFormat.Messages => FromMessagesRow(row),
            DatasetFormat.ShareGpt => FromShareGptRow(row),
            DatasetFormat.Alpaca => FromAlpacaRow(row),
            DatasetFormat.PromptCompletion => FromPromptCompletionRow(row),
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, "a concrete format (detect it first)"),
        };
    }

    private static TrainingExample FromMessagesRow(DatasetRow row)
    {
        var field = row.Data.ContainsKey("messages") ? "messages" : "conversations";
        if (row.Data[field] is not JsonArray raw)
            throw row.Error(field, row.Data[field] is null ? "missing" : $"must be a list of messages, not {DatasetReader.Kind(row.Data[field])}");
        return TrainingExample.FromMessages(Conversation.WithoutNulls(raw, row.Where, field), Tools(row), row.Where, field);
    }

    private static readonly Dictionary<string, string> ShareGptRoles = new()
    {
        ["human"] = "user", ["user"] = "user", ["gpt"] = "assistant", ["assistant"] = "assistant", ["system"] = "system",
        ["tool"] = "tool", ["observation"] = "tool", ["function_call"] = "assistant",
    };

    private static TrainingExample FromShareGptRow(DatasetRow row)
    {
        if (row.Data["conversations"] is not JsonArray conv)
            throw row.Error("conversations", row.Data["conversations"] is null ? "missing" : $"must be a list of turns, not {DatasetReader.Kind(row.Data["conversations"])}");
        var messages = new JsonArray();
        if (OptionalString(row, "system") is { Length: > 0 } system) messages.Add(new JsonObject { ["role"] = "system", ["content"] = system });
        for (var i = 0; i < conv.Count; i++)
        {
            var at = $"conversations[{i}]";
            if (conv[i] is not JsonObject turn) throw row.Error(at, $"expected a turn object, found {DatasetReader.Kind(conv[i])}");
            if (turn["from"] is not JsonValue fv || fv.GetValueKind() != JsonValueKind.String)
                throw row.Error($"{at}.from", turn["from"] is null ? "missing" : $"must be a string, not {DatasetReader.Kind(turn["from"])}");
            var from = fv.GetValue<string>();
            if (!ShareGptRoles.TryGetValue(from, out var role))
                throw row.Error($"{at}.from", $"unknown speaker \"{from}\" (expected one of {string.Join(", ", ShareGptRoles.Keys)})");
            if (turn["value"] is not JsonValue vv || vv.GetValueKind() != JsonValueKind.String)
                throw row.Error($"{at}.value", turn["value"] is null ? "missing" : $"must be a string, not {DatasetReader.Kind(turn["value"])}");
            var value = vv.GetValue<string>();
            if (from == "function_call") messages.Add(new JsonObject { ["role"] = "assistant", ["tool_calls"] = ToolCalls(row, $"{at}.value", value) });
            else messages.Add(new JsonObject { ["role"] = role, ["content"] = value });
        }
        return TrainingExample.FromMessages(messages, Tools(row), row.Where, "conversations");
    }

    /// <summary>A ShareGPT <c>function_call</c> value: JSON <c>{"name", "arguments"}</c> or a list of them.</summary>
    private static JsonArray ToolCalls(DatasetRow row, string field, string value)
    {
        JsonNode? parsed;
        try { parsed = JsonNode.Parse(value); }
        catch (JsonException e) { throw row.Error(field, $"a function_call must be JSON {{\"name\": ..., \"arguments\": ...}}: {e.Message}"); }
        var calls = parsed is JsonArray a ? a : new JsonArray(parsed);
        var result = new JsonArray();
        for (var i = 0; i < calls.Count; i++)
        {
            if (calls[i] is not JsonObject c || c["name"] is not JsonValue)
                throw row.Error(field, "a function_call must be JSON {\"name\": ..., \"arguments\": ...} (or a list of them)");
            result.Add(new JsonObject
            {
                ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = c["name"]!.DeepClone(), ["arguments"] = c["arguments"]?.DeepClone() ?? new JsonObject() },
            });
        }
        return result;
    }

    private static TrainingExample FromAlpacaRow(DatasetRow row)
    {
        var instruction = RequiredString(row, "instruction");
        var input = OptionalString(row, "input");
        var output = RequiredString(row, "output");
        var messages = new JsonArray();
        if (OptionalString(row, "system") is { Length: > 0 } system) messages.Add(new JsonObject { ["role"] = "system", ["content"] = system });
        // LLaMA-Factory's Alpaca rows may carry earlier turns as [[question, answer], ...].
        if (row.Data["history"] is { } history)
        {
            if (history is not JsonArray turns) throw row.Error("history", $"must be a list of [question, answer] pairs, not {DatasetReader.Kind(history)}");
            for (var i = 0; i < turns.Count; i++)
            {
                if (turns[i] is not JsonArray { Count: 2 } pair || pair.Any(p => p is not JsonValue pv || pv.GetValueKind() != JsonValueKind.String))
                    throw row.Error($"history[{i}]", "must be a [question, answer] pair of strings");
                messages.Add(new JsonObject { ["role"] = "user", ["content"] = pair[0]!.GetValue<string>() });
                messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = pair[1]!.GetValue<string>() });
            }
        }
        // Alpaca's own convention: the input, when there is one, follows the instruction after a blank line.
        var user = string.IsNullOrEmpty(input) ? instruction : instruction + "\n\n" + input;
        messages.Add(new JsonObject { ["role"] = "user", ["content"] = user });
        messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = output });
        return TrainingExample.FromMessages(messages, null, row.Where, "instruction/input/output");
    }

    private static TrainingExample FromPromptCompletionRow(DatasetRow row)
    {
        var prompt = row.Data["prompt"];
        var completion = row.Data["completion"];
        if (prompt is JsonValue pv && pv.GetValueKind() == JsonValueKind.String)
        {
            if (completion is not JsonValue cv || cv.GetValueKind() != JsonValueKind.String)
                throw row.Error("completion", $"must be a string like the prompt, not {DatasetReader.Kind(completion)}");
            if (cv.GetValue<string>().Length == 0) throw row.Error("completion", "empty: nothing to train");
            return TrainingExample.FromPromptCompletion(pv.GetValue<string>(), cv.GetValue<string>(), row.Where);
        }
        if (prompt is JsonArray pa)
        {
            if (completion is not JsonArray ca)
                throw row.Error("completion", $"must be a list of messages like the prompt, not {DatasetReader.Kind(completion)}");
            return TrainingExample.FromPromptCompletion(Conversation.WithoutNulls(pa, row.Where, "prompt"),
                Conversation.WithoutNulls(ca, row.Where, "completion"), Tools(row), row.Where);
        }
        throw row.Error("prompt", prompt is null ? "missing" : $"must be a string or a list of messages, not {DatasetReader.Kind(prompt)}");
    }

    /// <summary>The row's <c>tools</c>: a list of definitions, or a JSON string holding one (as many Hub datasets
    /// store it); null when absent.</summary>
    private static JsonArray? Tools(DatasetRow row)
    {
        var tools = row.Data["tools"];
        switch (tools)
        {
            case null: return null;
            case JsonArray a: return a;
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                var s = v.GetValue<string>();
                if (string.IsNullOrWhiteSpace(s)) return null;
                try
                {
                    return JsonNode.Parse(s) as JsonArray ?? throw row.Error("tools", "a JSON string must hold a list of tool definitions");
                }
                catch (JsonException e) { throw row.Error("tools", $"not valid JSON: {e.Message}"); }
            default: throw row.Error("tools", $"must be a list of tool definitions (or a JSON string of one), not {DatasetReader.Kind(tools)}");
        }
    }

    private static string RequiredString(DatasetRow row, string field) =>
        OptionalString(row, field) ?? throw row.Error(field, "missing");

    private static string? OptionalString(DatasetRow row, string field)
    {
        var node = row.Data[field];
        if (node is null) return null;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.String)
            throw row.Error(field, $"must be a string, not {DatasetReader.Kind(node)}");
        return v.GetValue<string>();
    }
}
