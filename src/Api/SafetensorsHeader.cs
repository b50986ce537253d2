using System.Buffers.Binary;
using System.Text.Json;

namespace SlothSharp;

/// <summary>One tensor's entry in a safetensors header. Begin/End are byte offsets into the data section (after the
/// header); the entry has been checked: End − Begin = product(Shape) × element size, within the file.</summary>
public sealed record SafetensorsEntry(string Name, string Dtype, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
    public long NumElements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Parses and checks a safetensors header against the file length. Checks, each a <see cref="SafetensorsFormatException"/>:
/// the 8-byte length fits the file and is at most <see cref="MaxHeaderBytes"/>; the header is UTF-8 JSON, an object of
/// objects; no name twice; every tensor has a known dtype, a shape of non-negative integers and two data_offsets;
/// product(shape) × element size (checked arithmetic) equals the span; the spans, sorted, start at 0 and tile the data
/// section to its end with no overlap and no gap (as the reference implementation demands).
/// </summary>
internal static class SafetensorsHeader
{
    /// <summary>The reference implementation's limit; a larger header is a corrupt length, not a real file.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public sealed record Parsed(long DataStart, Dictionary<string, SafetensorsEntry> Entries, Dictionary<string, string> Metadata);

    /// <summary>Reads the 8-byte length prefix and returns the header length, checked against the file length.</summary>
    public static long ReadLength(string path, ReadOnlySpan<byte> prefix, long fileLength)
    {
        if (fileLength < 8)
            throw new SafetensorsFormatException(path, null,
                fileLength == 0 ? "the file is empty" : $"the file is {fileLength} bytes: too short for the 8-byte header length");
        var n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > MaxHeaderBytes)
            throw new SafetensorsFormatException(path, null, $"header length {n} is over the {MaxHeaderBytes}-byte limit (not a safetensors file, or a corrupt one)");
        if (n < 2)
            throw new SafetensorsFormatException(path, null, $"header length {n} is too short for a JSON object");
        if ((long)n > fileLength - 8)
            throw new SafetensorsFormatException(path, null, $"header length {n} runs past the end of the {fileLength}-byte file (truncated?)");
        return (long)n;
    }

    public static Parsed Parse(string path, ReadOnlySpan<byte> header, long fileLength)
    {
        var dataStart = 8 + (long)header.Length;
        var dataLength = fileLength - dataStart;
        // JsonDocument checks UTF-8 only when a string is read; check it all first.
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new SafetensorsFormatException(path, null, "the header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header.ToArray(), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new SafetensorsFormatException(path, null, $"the header is not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(path, null, $"the header is a JSON {doc.RootElement.ValueKind}, not an object");
            var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seenMetadata = false;
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (seenMetadata) throw new SafetensorsFormatException(path, null, "__metadata__ appears twice in the header");
                    seenMetadata = true;
                    ParseMetadata(path, prop.Value, metadata);
                    continue;
                }
                if (entries.ContainsKey(prop.Name))
                    throw new SafetensorsFormatException(path, prop.Name, "the name appears twice in the header");
                entries[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLength);
            }
            CheckTiling(path, entries.Values, dataLength);
            return new Parsed(dataStart, entries, metadata);
        }
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, null, $"__metadata__ is a JSON {value.ValueKind}, not an object of strings");
        foreach (var m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsFormatException(path, null, $"__metadata__ '{m.Name}' is a JSON {m.Value.ValueKind}, not a string");
            if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                throw new SafetensorsFormatException(path, null, $"__metadata__ '{m.Name}' appears twice");
        }
    }

    private static SafetensorsEntry ParseEntry(string path, string name, JsonElement o, long dataLength)
    {
        if (o.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, name, $"the entry is a JSON {o.ValueKind}, not an object");
        JsonElement Field(string field) => o.TryGetProperty(field, out var v)
            ? v
            : throw new SafetensorsFormatException(path, name, $"the entry has no '{field}'");

        var dtypeElement = Field("dtype");
        if (dtypeElement.ValueKind != JsonValueKind.String)
            throw new SafetensorsFormatException(path, name, $"'dtype' is a JSON {dtypeElement.ValueKind}, not a string");
        var dtype = dtypeElement.GetString()!;
        var size = SafetensorsDtypes.SizeOf(dtype);
        if (size == 0) throw new SafetensorsFormatException(path, name, $"unknown dtype '{dtype}'");

        var shape = Integers(path, name, "shape", Field("shape"), -1);
        var offsets = Integers(path, name, "data_offsets", Field("data_offsets"), 2);
        var (begin, end) = (offsets[0], offsets[1]);
        if (end < begin)
            throw new SafetensorsFormatException(path, name, $"data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength)
            throw new SafetensorsFormatException(path, name, $"data_offsets [{begin}, {end}] run past the end of the data ({dataLength} bytes; truncated file?)");
        long bytes;
        try
        {
            // The product of the non-zero dimensions must fit too: libtorch computes strides from them even for an
            // empty tensor.
            _ = checked(shape.Aggregate(1L, (a, b) => a * Math.Max(b, 1)) * size);
            bytes = checked(shape.Aggregate(1L, (a, b) => a * b) * size);
        }
        catch (OverflowException)
        {
            throw new SafetensorsFormatException(path, name, $"shape [{string.Join(", ", shape)}] overflows a 64-bit byte count");
        }
        if (end - begin != bytes)
            throw new SafetensorsFormatException(path, name,
                $"shape [{string.Join(", ", shape)}] of {dtype} needs {bytes} bytes but data_offsets [{begin}, {end}] hold {end - begin}");
        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    /// <summary>A JSON array of non-negative 64-bit integers (of <paramref name="count"/> elements unless −1).</summary>
    private static long[] Integers(string path, string name, string field, JsonElement a, int count)
    {
        if (a.ValueKind != JsonValueKind.Array)
            throw new SafetensorsFormatException(path, name, $"'{field}' is a JSON {a.ValueKind}, not an array");
        var n = a.GetArrayLength();
        if (count >= 0 && n != count)
            throw new SafetensorsFormatException(path, name, $"'{field}' has {n} elements, expected {count}");
        var result = new long[n];
        var i = 0;
        foreach (var x in a.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt64(out var v))
                throw new SafetensorsFormatException(path, name, $"'{field}'[{i}] = {x.GetRawText()} is not a 64-bit integer");
            if (v < 0)
                throw new SafetensorsFormatException(path, name, $"'{field}'[{i}] = {v} is negative");
            result[i++] = v;
        }
        return result;
    }

    private static void CheckTiling(string path, IEnumerable<SafetensorsEntry> entries, long dataLength)
    {
        long expected = 0;
        SafetensorsEntry? previous = null;
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin < expected)
                throw new SafetensorsFormatException(path, e.Name,
                    $"data_offsets [{e.Begin}, {e.End}] overlap tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]");
            if (e.Begin > expected)
                throw new SafetensorsFormatException(path, e.Name,
                    $"data_offsets [{e.Begin}, {e.End}] leave a gap: the previous tensor ends at {expected}");
            expected = e.End;
            previous = e;
        }
        if (expected != dataLength)
            throw new SafetensorsFormatException(path, null,
                $"the tensors cover {expected} bytes but the data section has {dataLength} (truncated, or trailing bytes)");
    }
}
