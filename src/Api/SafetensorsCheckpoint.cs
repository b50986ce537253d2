using System.Text.Json;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>
/// A checkpoint of one or more safetensors files read as one: a single <c>.safetensors</c> file, or shards listed by a
/// Hugging Face <c>model.safetensors.index.json</c> (<c>{"metadata": {...}, "weight_map": {"name": "shard file"}}</c>).
/// <see cref="Open"/> also takes a model directory (its index when present, else <c>model.safetensors</c>). Every
/// shard's header is checked on open; a missing shard, a name the index maps to a shard that lacks it, or a name held
/// by two shards is a <see cref="SafetensorsFormatException"/>. Shards are memory-mapped (see <see cref="SafetensorsReader"/>).
/// </summary>
public sealed class SafetensorsCheckpoint : ITensorSource, IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";
    public const string SingleFileName = "model.safetensors";

    private readonly List<SafetensorsReader> _shards;
    private readonly Dictionary<string, SafetensorsReader> _byName;

    private SafetensorsCheckpoint(string path, List<SafetensorsReader> shards, Dictionary<string, SafetensorsReader> byName,
                                  IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _shards = shards;
        _byName = byName;
        Metadata = metadata;
    }

    /// <summary>The file or index the checkpoint was opened from.</summary>
    public string Path { get; }
    /// <summary>The index's <c>metadata</c> (values as JSON text, e.g. total_size), or the single file's <c>__metadata__</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyList<string> Files => _shards.Select(s => s.Path).ToList();
    public IEnumerable<string> Keys => _byName.Keys;
    public int Count => _byName.Count;
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The header entry of a tensor (dtype, shape, offsets) without reading it.</summary>
    public SafetensorsEntry Entry(string name) => Shard(name).Entries[name];

    /// <summary>The shard file holding <paramref name="name"/>.</summary>
    public string FileOf(string name) => Shard(name).Path;

    public Tensor Read(string name, Device? device = null) => Shard(name).Read(name, device);

    public string ReadUtf8(string name) => Shard(name).ReadUtf8(name);

    /// <summary>A float tensor as float32 into <paramref name="destination"/>, straight from the mapped shard.</summary>
    internal void ReadFloat32(string name, Span<float> destination) => Shard(name).ReadFloat32(name, destination);

    private SafetensorsReader Shard(string name) =>
        _byName.TryGetValue(name, out var r) ? r : throw new KeyNotFoundException($"{Path}: no tensor named '{name}'");

    /// <summary>Opens a <c>.safetensors</c> file, a <c>*.index.json</c>, or a directory holding one of
    /// <see cref="IndexFileName"/> or <see cref="SingleFileName"/>.</summary>
    public static SafetensorsCheckpoint Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
        {
            var index = System.IO.Path.Combine(path, IndexFileName);
            var single = System.IO.Path.Combine(path, SingleFileName);
            if (File.Exists(index)) return OpenIndex(index);
            if (File.Exists(single)) return OpenFile(single);
            throw new FileNotFoundException($"{path}: no {IndexFileName} and no {SingleFileName} in the directory", single);
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(path) : OpenFile(path);
    }

    private static SafetensorsCheckpoint OpenFile(string path)
    {
        var reader = new SafetensorsReader(path);
        return new SafetensorsCheckpoint(path, [reader], reader.Entries.Keys.ToDictionary(k => k, _ => reader, StringComparer.Ordinal),
            reader.Metadata);
    }

    private static SafetensorsCheckpoint OpenIndex(string indexPath)
    {
        var (weightMap, metadata) = ParseIndex(indexPath);
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        var shards = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
        try
        {
            foreach (var file in weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                if (file.Length == 0 || System.IO.Path.IsPathRooted(file) || file.Contains("..", StringComparison.Ordinal))
                    throw new SafetensorsFormatException(indexPath, null, $"weight_map names shard '{file}': shards must be files beside the index");
                var shardPath = System.IO.Path.Combine(dir, file);
                if (!File.Exists(shardPath))
                    throw new SafetensorsFormatException(indexPath, null, $"shard '{file}' is listed in weight_map but {shardPath} does not exist");
                shards[file] = new SafetensorsReader(shardPath);
            }
            var byName = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
            foreach (var (name, file) in weightMap)
            {
                var shard = shards[file];
                if (!shard.Contains(name))
                    throw new SafetensorsFormatException(indexPath, name, $"weight_map puts it in '{file}' but that shard has no such tensor");
                byName[name] = shard;
            }
            // A tensor stored in two shards would be read from whichever the index names; the other copy may differ.
            foreach (var (file, shard) in shards)
            {
                foreach (var name in shard.Keys)
                {
                    // Unlisted extras are ignored, as transformers ignores them.
                    if (!byName.TryGetValue(name, out var owner)) continue;
                    if (!ReferenceEquals(owner, shard))
                        throw new SafetensorsFormatException(indexPath, name,
                            $"it is in two shards: '{file}' and '{System.IO.Path.GetFileName(owner.Path)}'");
                }
            }
            return new SafetensorsCheckpoint(indexPath, shards.Values.ToList(), byName, metadata);
        }
        catch
        {
            foreach (var s in shards.Values) s.Dispose();
            throw;
        }
    }

    private static (Dictionary<string, string> weightMap, Dictionary<string, string> metadata) ParseIndex(string indexPath)
    {
        byte[] bytes = File.ReadAllBytes(indexPath);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new SafetensorsFormatException(indexPath, null, $"not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(indexPath, null, "the index is not a JSON object");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            if (doc.RootElement.TryGetProperty("metadata", out var m) && m.ValueKind == JsonValueKind.Object)
                foreach (var p in m.EnumerateObject())
                    metadata[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText();
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(indexPath, null, "the index has no 'weight_map' object");
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new SafetensorsFormatException(indexPath, p.Name, "its weight_map value is not a file name");
                if (!weightMap.TryAdd(p.Name, p.Value.GetString()!))
                    throw new SafetensorsFormatException(indexPath, p.Name, "weight_map lists it twice");
            }
            return (weightMap, metadata);
        }
    }

    public void Dispose()
    {
        foreach (var s in _shards) s.Dispose();
    }
}
