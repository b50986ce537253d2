using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafetensorsEntry(string Name, string Dtype, long[] Shape, long Begin, long End);

/// <summary>Reads a safetensors file: an 8-byte little-endian header length, a JSON header, then raw little-endian
/// tensor data. Tensors are read one at a time, so files larger than memory can be streamed.</summary>
public sealed class SafetensorsReader : IDisposable
{
    private readonly FileStream _stream;
    private readonly long _dataStart;

    public SafetensorsReader(string path)
    {
        _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var lengthBytes = new byte[8];
        _stream.ReadExactly(lengthBytes);
        var headerLength = BitConverter.ToInt64(lengthBytes);
        if (headerLength <= 0 || headerLength > 100_000_000 || 8 + headerLength > _stream.Length)
            throw new InvalidDataException($"{path}: not a safetensors file (header length {headerLength})");
        var header = new byte[headerLength];
        _stream.ReadExactly(header);
        _dataStart = 8 + headerLength;
        var root = JsonNode.Parse(Encoding.UTF8.GetString(header))?.AsObject()
                   ?? throw new InvalidDataException($"{path}: empty safetensors header");
        foreach (var (name, node) in root)
        {
            if (name == "__metadata__")
            {
                foreach (var (k, v) in node!.AsObject()) Metadata[k] = v?.GetValue<string>() ?? "";
                continue;
            }
            var o = node!.AsObject();
            var offsets = o["data_offsets"]!.AsArray();
            var entry = new SafetensorsEntry(name, o["dtype"]!.GetValue<string>(),
                o["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray(),
                offsets[0]!.GetValue<long>(), offsets[1]!.GetValue<long>());
            var expected = entry.Shape.Aggregate(1L, (a, b) => a * b) * ElementSize(entry.Dtype);
            if (entry.End - entry.Begin != expected || _dataStart + entry.End > _stream.Length)
                throw new InvalidDataException($"{path}: tensor '{name}' has {entry.End - entry.Begin} bytes, expected {expected}");
            Entries[name] = entry;
        }
        Path = path;
    }

    public string Path { get; }
    public Dictionary<string, SafetensorsEntry> Entries { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);

    /// <summary>Reads one tensor into a new CPU tensor of its stored dtype and shape.</summary>
    public Tensor Read(string name)
    {
        if (!Entries.TryGetValue(name, out var e))
            throw new KeyNotFoundException($"{Path}: no tensor named '{name}' (has: {string.Join(", ", Entries.Keys.Order())})");
        var bytes = new byte[e.End - e.Begin];
        _stream.Seek(_dataStart + e.Begin, SeekOrigin.Begin);
        _stream.ReadExactly(bytes);
        var t = empty(e.Shape, ToScalarType(e.Dtype));
        t.bytes = bytes;
        return t;
    }

    /// <summary>Reads a tensor holding raw UTF-8 bytes (how bitsandbytes stores its quant_state JSON).</summary>
    public string ReadUtf8(string name)
    {
        using var t = Read(name);
        return Encoding.UTF8.GetString(t.bytes);
    }

    public void Dispose() => _stream.Dispose();

    internal static int ElementSize(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "U8" or "I8" or "BOOL" => 1,
        _ => throw new InvalidDataException($"unsupported safetensors dtype '{dtype}'"),
    };

    internal static ScalarType ToScalarType(string dtype) => dtype switch
    {
        "F64" => ScalarType.Float64,
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte,
        "BOOL" => ScalarType.Bool,
        _ => throw new InvalidDataException($"unsupported safetensors dtype '{dtype}'"),
    };

    internal static string FromScalarType(ScalarType t) => t switch
    {
        ScalarType.Float64 => "F64",
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"dtype {t} cannot be written to safetensors"),
    };
}

/// <summary>Writes safetensors files (tensors in the given order, data 8-byte aligned by header padding).</summary>
public static class SafetensorsWriter
{
    public static void Save(string path, IReadOnlyList<KeyValuePair<string, Tensor>> tensors,
                            IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var m = new JsonObject();
            foreach (var (k, v) in metadata) m[k] = v;
            header["__metadata__"] = m;
        }
        long offset = 0;
        foreach (var (name, t) in tensors)
        {
            var size = t.numel() * t.element_size();
            header[name] = new JsonObject
            {
                ["dtype"] = SafetensorsReader.FromScalarType(t.dtype),
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + size),
            };
            offset += size;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        var padded = (json.Length + 7) / 8 * 8;  // the format pads the header with spaces to 8-byte alignment
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        stream.Write(BitConverter.GetBytes((long)padded));
        stream.Write(json);
        for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        foreach (var (_, t) in tensors)
        {
            using var cpuT = t.detach().cpu().contiguous();
            stream.Write(cpuT.bytes);
        }
    }
}
