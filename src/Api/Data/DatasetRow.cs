using System.Text.Json.Nodes;

namespace SlothSharp.Data;

/// <summary>One row of a dataset file as a JSON object, with where it came from so that every later error can name
/// the file, the row and the field.</summary>
/// <param name="File">The dataset file.</param>
/// <param name="Location">"line N" (1-based, .jsonl) or "row N" (0-based index, .json and .parquet).</param>
/// <param name="Data">The row's fields (Parquet columns become JSON: lists → arrays, structs → objects).</param>
public sealed record DatasetRow(string File, string Location, JsonObject Data)
{
    /// <summary>"file: line 3" / "file: row 7".</summary>
    public string Where => $"{File}: {Location}";

    /// <summary>An <see cref="InvalidDataException"/> naming the file, the row and <paramref name="field"/>
    /// (a path such as <c>messages[2].content</c>).</summary>
    public InvalidDataException Error(string field, string message) => new($"{Where}: field \"{field}\": {message}");
}
