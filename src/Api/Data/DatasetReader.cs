using System.Collections;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parquet;
using Parquet.Serialization;

namespace SlothSharp.Data;

/// <summary>
/// Reads the rows of a dataset file as JSON objects: <c>.jsonl</c> (one object per line, blank lines skipped),
/// <c>.json</c> (a top-level array of objects, or an object whose single array-valued field holds them) and
/// <c>.parquet</c> (as Hugging Face Hub datasets ship: nested columns such as <c>messages</c> of
/// <c>list&lt;struct&lt;role, content&gt;&gt;</c> become arrays of objects; null values are left out of the object).
/// JSON files must be valid UTF-8; every problem is an <see cref="InvalidDataException"/> naming the file and the
/// line (.jsonl) or row index (.json, .parquet).
/// </summary>
public static class DatasetReader
{
    /// <summary>The extensions <see cref="Read"/> accepts.</summary>
    public static readonly IReadOnlyList<string> Extensions = [".jsonl", ".json", ".parquet"];

    public static IReadOnlyList<DatasetRow> Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (!Extensions.Contains(ext))
            throw new InvalidDataException($"{path}: unknown extension '{ext}': expected .jsonl (one JSON object per line), .json (an array of objects) or .parquet");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found", path);
        var rows = ext switch
        {
            ".jsonl" => ReadJsonLines(path),
            ".json" => ReadJsonArray(path),
            _ => ReadParquet(path),
        };
        if (rows.Count == 0) throw new InvalidDataException($"{path}: no rows (the file is empty)");
        return rows;
    }

    private static List<DatasetRow> ReadJsonLines(string path)
    {
        var rows = new List<DatasetRow>();
        foreach (var (lineNo, line) in Utf8Lines.Read(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(line); }
            catch (JsonException e) { throw new InvalidDataException($"{path}: line {lineNo}: not valid JSON: {e.Message}", e); }
            if (node is not JsonObject obj)
                throw new InvalidDataException($"{path}: line {lineNo}: expected a JSON object, found {Kind(node)}");
            rows.Add(new DatasetRow(path, $"line {lineNo}", obj));
        }
        return rows;
    }

    private static List<DatasetRow> ReadJsonArray(string path)
    {
        var bytes = File.ReadAllBytes(path);
        // Validate the encoding first: System.Text.Json would also reject invalid UTF-8, but only as a JSON error.
        try { _ = Utf8Lines.Strict.GetCharCount(bytes); }
        catch (DecoderFallbackException e)
        {
            var line = 1 + bytes.AsSpan(0, Math.Max(0, e.Index)).Count((byte)'\n');
            throw new InvalidDataException($"{path}: line {line}: invalid UTF-8 (byte offset {e.Index} in the file)", e);
        }
        JsonNode? root;
        try { root = JsonNode.Parse(bytes, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = false }); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON (line {e.LineNumber + 1}): {e.Message}", e); }
        JsonArray array;
        string prefix;
        switch (root)
        {
            case JsonArray a: array = a; prefix = ""; break;
            case JsonObject o:
                var arrays = o.Where(kv => kv.Value is JsonArray).ToList();
                if (arrays.Count != 1)
                    throw new InvalidDataException($"{path}: a top-level object must hold exactly one array of rows; found {arrays.Count} array fields ({string.Join(", ", o.Select(kv => $"\"{kv.Key}\""))})");
                array = (JsonArray)arrays[0].Value!;
                prefix = $"\"{arrays[0].Key}\" ";
                break;
            default: throw new InvalidDataException($"{path}: expected a JSON array of row objects (or an object holding one), found {Kind(root)}");
        }
        var rows = new List<DatasetRow>(array.Count);
        for (var i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject obj)
                throw new InvalidDataException($"{path}: {prefix}row {i}: expected a JSON object, found {Kind(array[i])}");
            rows.Add(new DatasetRow(path, $"{prefix}row {i}", obj));
        }
        foreach (var r in rows) array.Remove(r.Data);  // detach: each row becomes the root of its own tree
        return rows;
    }

    private static List<DatasetRow> ReadParquet(string path)
    {
        DeserializationResult<Dictionary<string, object>> result;
        try
        {
            // Parquet.Net is async-only; the file is read on the thread pool so no caller context can deadlock.
            result = Task.Run(async () =>
            {
                await using var stream = File.OpenRead(path);
                return await ParquetSerializer.DeserializeUntypedAsync(stream);
            }).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or InvalidOperationException or ArgumentException or IndexOutOfRangeException)
        {
            throw new InvalidDataException($"{path}: not a readable Parquet file: {e.Message}", e);
        }
        var rows = new List<DatasetRow>(result.Data.Count);
        for (var i = 0; i < result.Data.Count; i++)
        {
            var location = $"row {i}";
            rows.Add(new DatasetRow(path, location, (JsonObject)ToJson(result.Data[i], $"{path}: {location}", "")!));
        }
        return rows;
    }

    /// <summary>A Parquet value (as Parquet.Net's untyped reader gives it) as JSON; nulls become null (and are left
    /// out of objects).</summary>
    private static JsonNode? ToJson(object? value, string where, string field) => value switch
    {
        null => null,
        string s => JsonValue.Create(s),
        ReadOnlyMemory<char> m => JsonValue.Create(m.ToString()),
        bool b => JsonValue.Create(b),
        int or long or short or sbyte or byte or uint or ulong or ushort => JsonValue.Create(Convert.ToInt64(value)),
        float f => JsonValue.Create((double)f),
        double d => JsonValue.Create(d),
        decimal m => JsonValue.Create(m),
        DateTime t => JsonValue.Create(t.ToString("O")),
        DateTimeOffset t => JsonValue.Create(t.ToString("O")),
        byte[] or ReadOnlyMemory<byte> => JsonValue.Create(Convert.ToBase64String(value is byte[] a ? a : ((ReadOnlyMemory<byte>)value).ToArray())),
        IDictionary<string, object> dict => ToObject(dict, where, field),
        IDictionary dict => ToObject(dict.Keys.Cast<object>().ToDictionary(k => k.ToString() ?? "", k => dict[k]!), where, field),
        IEnumerable list => new JsonArray(list.Cast<object?>().Select((v, i) => ToJson(v, where, $"{field}[{i}]")).ToArray()),
        _ => throw new InvalidDataException($"{where}: field \"{field}\": unsupported Parquet value of type {value.GetType().Name}"),
    };

    private static JsonObject ToObject(IDictionary<string, object> dict, string where, string field)
    {
        var obj = new JsonObject();
        foreach (var (key, v) in dict)
            if (ToJson(v, where, field.Length == 0 ? key : $"{field}.{key}") is { } node) obj[key] = node;
        return obj;
    }

    internal static string Kind(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => v.GetValueKind().ToString(),
        },
        _ => node.GetType().Name,
    };
}
