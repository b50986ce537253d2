using System.IO.MemoryMappedFiles;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>
/// Reads one safetensors file: an 8-byte little-endian header length, a JSON header, then raw little-endian tensor
/// data. The constructor checks the whole header against the file (see <see cref="SafetensorsFormatException"/>): a
/// reader that opened reads every tensor without further format errors. Tensors are copied from a read-only memory
/// mapping straight into the new tensor's storage: one copy, no managed buffer, no 2 GiB limit per tensor, and only
/// the tensors read are paged in, so files larger than memory can be read one tensor at a time.
/// </summary>
public sealed class SafetensorsReader : ITensorSource, IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafetensorsEntry> _entries;
    private readonly Dictionary<string, string> _metadata;
    private bool _disposed;

    public SafetensorsReader(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        Path = path;
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess);
        try
        {
            var length = stream.Length;
            Span<byte> prefix = stackalloc byte[8];
            if (length >= 8) stream.ReadExactly(prefix);
            var headerLength = SafetensorsHeader.ReadLength(path, prefix, length);
            var header = new byte[headerLength];
            stream.ReadExactly(header);
            var parsed = SafetensorsHeader.Parse(path, header, length);
            (_dataStart, _entries, _metadata) = (parsed.DataStart, parsed.Entries, parsed.Metadata);
            FileLength = length;
            // The mapping keeps the file open; the stream is handed over (leaveOpen: false).
            _map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, false);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    public string Path { get; }
    public long FileLength { get; }
    /// <summary>The header's entries by name (checked: every one can be read).</summary>
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries => _entries;
    /// <summary>The header's <c>__metadata__</c> (string to string; empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _metadata;
    public IEnumerable<string> Keys => _entries.Keys;
    public bool Contains(string name) => _entries.ContainsKey(name);

    /// <summary>Reads one tensor into a new tensor of its stored dtype and shape, on <paramref name="device"/> (default
    /// CPU; a CUDA tensor is staged through one host tensor).</summary>
    public Tensor Read(string name, Device? device = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_entries.TryGetValue(name, out var e))
            throw new KeyNotFoundException($"{Path}: no tensor named '{name}'{Nearby(name)}");
        var dtype = SafetensorsDtypes.ToTorch(e.Dtype)
                    ?? throw new SafetensorsFormatException(Path, name, $"dtype {e.Dtype} has no TorchSharp type (supported: {SafetensorsDtypes.Supported})");
        var host = empty(e.Shape, dtype);
        try
        {
            CopyTo(e, host);
            if (device is null || device.type == DeviceType.CPU) return host;
            using (host) return host.to(device);
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    /// <summary>Reads a tensor holding raw UTF-8 bytes (how bitsandbytes stores its quant_state JSON).</summary>
    public string ReadUtf8(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_entries.TryGetValue(name, out var e))
            throw new KeyNotFoundException($"{Path}: no tensor named '{name}'{Nearby(name)}");
        return Encoding.UTF8.GetString(Bytes(e));
    }

    /// <summary>The raw bytes of one tensor (a managed copy: meant for small tensors such as quant_state JSON).</summary>
    public byte[] Bytes(SafetensorsEntry e)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (e.ByteLength > Array.MaxLength)
            throw new ArgumentException($"{Path}: tensor '{e.Name}' is {e.ByteLength} bytes: too large for a managed array; use Read", nameof(e));
        var bytes = new byte[e.ByteLength];
        _view.ReadArray(_dataStart + e.Begin, bytes, 0, bytes.Length);
        return bytes;
    }

    /// <summary>Reads a float32, bfloat16 or float16 tensor as float32 into <paramref name="destination"/> (exactly its
    /// element count), straight from the mapped file: no intermediate tensor (the GGUF exporter's input path).</summary>
    internal unsafe void ReadFloat32(string name, Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_entries.TryGetValue(name, out var e))
            throw new KeyNotFoundException($"{Path}: no tensor named '{name}'{Nearby(name)}");
        var (dtype, width) = e.Dtype switch
        {
            "F32" => (Gguf.Float32Widening.Source.F32, 4),
            "BF16" => (Gguf.Float32Widening.Source.BF16, 2),
            "F16" => (Gguf.Float32Widening.Source.F16, 2),
            _ => throw new SafetensorsFormatException(Path, name, $"dtype {e.Dtype}: float32, bfloat16 or float16 expected"),
        };
        if (destination.Length != e.NumElements || e.ByteLength != e.NumElements * width)
            throw new SafetensorsFormatException(Path, name, $"{e.ByteLength} bytes of {e.Dtype} for shape [{string.Join(", ", e.Shape)}]; the destination holds {destination.Length} values");
        if (e.ByteLength == 0) return;
        byte* basePtr = null;
        var handle = _view.SafeMemoryMappedViewHandle;
        handle.AcquirePointer(ref basePtr);
        try
        {
            Gguf.Float32Widening.Convert((nint)(basePtr + _view.PointerOffset + _dataStart + e.Begin), dtype, destination);
        }
        finally
        {
            handle.ReleasePointer();
        }
    }

    private unsafe void CopyTo(SafetensorsEntry e, Tensor destination)
    {
        if (e.ByteLength == 0) return;
        byte* basePtr = null;
        var handle = _view.SafeMemoryMappedViewHandle;
        handle.AcquirePointer(ref basePtr);
        try
        {
            var src = basePtr + _view.PointerOffset + _dataStart + e.Begin;
            var dst = (byte*)TensorInterop.DataPtr(destination);
            Buffer.MemoryCopy(src, dst, e.ByteLength, e.ByteLength);
        }
        finally
        {
            handle.ReleasePointer();
        }
    }

    private string Nearby(string name)
    {
        var dot = name.LastIndexOf('.');
        var stem = dot > 0 ? name[..dot] : name;
        var near = _entries.Keys.Where(k => k.StartsWith(stem, StringComparison.Ordinal)).Order().Take(8).ToList();
        return near.Count > 0 ? $" (similar: {string.Join(", ", near)})" : $" ({_entries.Count} tensors in the file)";
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.Dispose();
        _map.Dispose();
    }
}
