using System.Text.Json;
using System.Text.Json.Nodes;

namespace SlothSharp.Models;

/// <summary>Typed reads of config.json fields with errors that name the file and the (dotted) field.</summary>
internal sealed class JsonFields(JsonObject obj, string file, string prefix = "")
{
    public string File => file;

    private JsonNode? Get(string name, bool required)
    {
        var n = obj[name];
        if (n is null && required) throw new ModelFormatException(file, prefix + name, "is missing");
        return n;
    }

    public JsonFields Object(string name) =>
        Get(name, true) is JsonObject o ? new JsonFields(o, file, prefix + name + ".")
            : throw new ModelFormatException(file, prefix + name, $"must be a JSON object; got {obj[name]!.ToJsonString()}");

    public string? String(string name, bool required = false)
    {
        var n = Get(name, required);
        if (n is null) return null;
        return n is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw new ModelFormatException(file, prefix + name, $"must be a string; got {n.ToJsonString()}");
    }

    public int? Int(string name, bool required = false, int min = int.MinValue)
    {
        var n = Get(name, required);
        if (n is null) return null;
        var value = AsInt(n, prefix + name, file);
        return value >= min ? value : throw new ModelFormatException(file, prefix + name, $"{value} must be >= {min}");
    }

    public double? Double(string name, bool required = false)
    {
        var n = Get(name, required);
        if (n is null) return null;
        return n is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>()
            : throw new ModelFormatException(file, prefix + name, $"must be a number; got {n.ToJsonString()}");
    }

    public bool? Bool(string name, bool required = false)
    {
        var n = Get(name, required);
        if (n is null) return null;
        return n is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>()
            : throw new ModelFormatException(file, prefix + name, $"must be true or false; got {n.ToJsonString()}");
    }

    /// <summary>Whether the field is present and not JSON null.</summary>
    public bool Has(string name) => obj[name] is not null;

    /// <summary>The raw node (null when missing or JSON null).</summary>
    public JsonNode? Node(string name) => obj[name];

    /// <summary>A list of numbers.</summary>
    public double[]? Doubles(string name, bool required = false)
    {
        var n = Get(name, required);
        if (n is null) return null;
        if (n is not JsonArray a) throw new ModelFormatException(file, prefix + name, $"must be a list of numbers; got {n.ToJsonString()}");
        return a.Select((x, i) => x is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>()
            : throw new ModelFormatException(file, $"{prefix}{name}[{i}]", $"must be a number; got {x?.ToJsonString() ?? "null"}")).ToArray();
    }

    /// <summary>A list of strings.</summary>
    public string[]? Strings(string name, bool required = false)
    {
        var n = Get(name, required);
        if (n is null) return null;
        if (n is not JsonArray a) throw new ModelFormatException(file, prefix + name, $"must be a list of strings; got {n.ToJsonString()}");
        return a.Select((x, i) => x is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw new ModelFormatException(file, $"{prefix}{name}[{i}]", $"must be a string; got {x?.ToJsonString() ?? "null"}")).ToArray();
    }

    public static int AsInt(JsonNode? n, string field, string file) =>
        n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var i) ? i
            : throw new ModelFormatException(file, field, $"must be an integer; got {n?.ToJsonString() ?? "null"}");
}
