using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>
/// Writes safetensors files: tensors in the given order, the header padded with spaces so the data starts 8-byte
/// aligned. Everything is checked before a byte is written (names unique and not <c>__metadata__</c>, dtypes the format
/// holds, tensors alive); the file is written under a temporary name in the same directory and renamed into place, so
/// a failure or a crash never leaves a half-written file at <c>path</c>. Tensors on any device are copied to the host
/// one at a time and streamed from their storage (no managed copy, no 2 GiB limit).
/// </summary>
public static class SafetensorsWriter
{
    public static void Save(string path, IReadOnlyList<KeyValuePair<string, Tensor>> tensors,
                            IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var header = BuildHeader(path, tensors, metadata);
        var full = System.IO.Path.GetFullPath(path);
        var temp = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full)!,
            $".{System.IO.Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                stream.Write(BitConverter.GetBytes((ulong)header.Length));
                stream.Write(header);
                foreach (var (_, t) in tensors) WriteData(stream, t);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>The padded header bytes (JSON + spaces to a multiple of 8).</summary>
    private static byte[] BuildHeader(string path, IReadOnlyList<KeyValuePair<string, Tensor>> tensors,
                                      IReadOnlyDictionary<string, string>? metadata)
    {
        var root = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var m = new JsonObject();
            foreach (var (k, v) in metadata) m[k] = v ?? throw new ArgumentException($"{path}: metadata '{k}' is null", nameof(metadata));
            root["__metadata__"] = m;
        }
        long offset = 0;
        foreach (var (name, t) in tensors)
        {
            if (string.IsNullOrEmpty(name) || name == "__metadata__")
                throw new ArgumentException($"{path}: '{name}' cannot name a tensor", nameof(tensors));
            if (root.ContainsKey(name)) throw new ArgumentException($"{path}: tensor '{name}' is given twice", nameof(tensors));
            if (t is null || t.IsInvalid) throw new ArgumentException($"{path}: tensor '{name}' is null or disposed", nameof(tensors));
            var dtype = SafetensorsDtypes.FromTorch(t.dtype)
                        ?? throw new ArgumentException($"{path}: tensor '{name}' is {t.dtype}; safetensors holds {SafetensorsDtypes.Supported}", nameof(tensors));
            var size = checked(t.numel() * t.element_size());
            root[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + size),
            };
            offset = checked(offset + size);
        }
        var json = Encoding.UTF8.GetBytes(root.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        var padded = new byte[(json.Length + 7) / 8 * 8];
        json.CopyTo(padded, 0);
        padded.AsSpan(json.Length).Fill((byte)' ');
        return padded;
    }

    private static unsafe void WriteData(Stream stream, Tensor t)
    {
        if (t.numel() == 0) return;
        using var host = t.detach().cpu().contiguous();
        var total = host.numel() * host.element_size();
        var ptr = (byte*)TensorInterop.DataPtr(host);
        const int Chunk = 1 << 30;
        for (long done = 0; done < total; done += Chunk)
            stream.Write(new ReadOnlySpan<byte>(ptr + done, (int)Math.Min(Chunk, total - done)));
        GC.KeepAlive(host);
    }
}
