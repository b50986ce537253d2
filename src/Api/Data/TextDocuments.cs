using System.Text;
using System.Text.Json;

namespace SlothSharp.Data;

/// <summary>
/// Reads a corpus of documents: <c>.jsonl</c> (one JSON object with a string "text" per line; blank lines are skipped)
/// or <c>.txt</c> (one document per non-empty line). The file must be valid UTF-8. Every problem is an
/// <see cref="InvalidDataException"/> naming the file and the line.
/// </summary>
public static class TextDocuments
{
    public static IReadOnlyList<string> Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is not (".jsonl" or ".txt"))
            throw new InvalidDataException($"{path}: unknown extension '{ext}': expected .jsonl (one {{\"text\": …}} per line) or .txt (one document per line)");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found", path);
        var docs = new List<string>();
        foreach (var (lineNo, line) in Utf8Lines.Read(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            docs.Add(ext == ".txt" ? line : ParseJsonLine(path, lineNo, line));
        }
        if (docs.Count == 0) throw new InvalidDataException($"{path}: no documents (the file is empty or has only blank lines)");
        return docs;
    }

    private static string ParseJsonLine(string path, int lineNo, string line)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: line {lineNo}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: line {lineNo}: expected a JSON object with a \"text\" field");
            if (!doc.RootElement.TryGetProperty("text", out var text))
                throw new InvalidDataException($"{path}: line {lineNo}: \"text\" is missing");
            if (text.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{path}: line {lineNo}: \"text\" must be a string, not {text.ValueKind}");
            try { return text.GetString()!; }
            catch (InvalidOperationException e) { throw new InvalidDataException($"{path}: line {lineNo}: \"text\" is not valid Unicode: {e.Message}", e); }
        }
    }
}
