using System.Text;

namespace SlothSharp.Gguf;

/// <summary>
/// Writes a GGUF v3 file: header, metadata key/values, tensor infos, then the tensor data, each tensor starting at a
/// multiple of the alignment (<c>general.alignment</c>, 32 by default, written into the metadata). Tensor data is
/// produced lazily, one tensor at a time, when <see cref="Write"/> reaches it, so a model is never held twice in memory.
/// The file is written under a temporary name beside the target and renamed at the end: a failure leaves no
/// half-written file under the real name.
/// </summary>
public sealed class GgufWriter
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint Version = 3;
    /// <summary>ggml's GGML_MAX_NAME is 64 bytes including the terminating zero.</summary>
    public const int MaxTensorNameBytes = 63;

    private readonly List<KeyValuePair<string, GgufValue>> _metadata = [];
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _keys = [];
    private readonly HashSet<string> _tensorNames = [];

    /// <param name="alignment">Data alignment in bytes (a power of two); written as <c>general.alignment</c>.</param>
    public GgufWriter(int alignment = 32)
    {
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
            throw new ArgumentException($"GGUF alignment must be a positive power of two, got {alignment}", nameof(alignment));
        Alignment = alignment;
        Add("general.alignment", GgufValue.U32((uint)alignment));
    }

    public int Alignment { get; }
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata => _metadata;
    public int TensorCount => _tensors.Count;

    /// <summary>Adds a metadata key (keys are unique; llama.cpp rejects files with duplicates).</summary>
    public void Add(string key, GgufValue value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        if (!_keys.Add(key)) throw new ArgumentException($"GGUF metadata key '{key}' was added twice", nameof(key));
        _metadata.Add(new(key, value));
    }

    /// <summary>Adds a tensor whose bytes come from <paramref name="data"/> when the file is written.</summary>
    /// <param name="name">GGUF tensor name (at most 63 UTF-8 bytes, unique).</param>
    /// <param name="type">ggml type of the bytes.</param>
    /// <param name="dims">ggml order: dims[0] is the row length (the innermost, contiguous dimension), so a PyTorch
    /// [out, in] matrix has dims [in, out].</param>
    /// <param name="data">Called once during <see cref="Write"/>; must return exactly
    /// <see cref="GgmlTypeInfo.TensorBytes"/> bytes.</param>
    public void AddTensor(string name, IReadOnlyList<long> dims, GgmlType type, Func<ReadOnlyMemory<byte>> data) =>
        AddTensor(name, dims, type, (Action<Stream>)(s => s.Write(data().Span)));

    /// <summary>Adds a tensor whose bytes <paramref name="writeData"/> writes to the file's stream (for tensors too
    /// large for one array: it must write exactly <see cref="GgmlTypeInfo.TensorBytes"/> bytes).</summary>
    public void AddTensor(string name, IReadOnlyList<long> dims, GgmlType type, Action<Stream> writeData)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (Encoding.UTF8.GetByteCount(name) > MaxTensorNameBytes)
            throw new ArgumentException($"tensor name '{name}' is longer than ggml's {MaxTensorNameBytes} bytes", nameof(name));
        if (dims.Count is < 1 or > 4) throw new ArgumentException($"tensor '{name}': ggml tensors have 1 to 4 dimensions, got {dims.Count}", nameof(dims));
        if (dims.Any(d => d <= 0)) throw new ArgumentException($"tensor '{name}': dimensions must be positive, got [{string.Join(", ", dims)}]", nameof(dims));
        if (!_tensorNames.Add(name)) throw new ArgumentException($"tensor '{name}' was added twice", nameof(name));
        var bytes = GgmlTypeInfo.TensorBytes(type, dims);
        _tensors.Add(new PendingTensor(name, dims.ToArray(), type, bytes, writeData));
    }

    /// <summary>Adds a tensor whose bytes are already at hand.</summary>
    public void AddTensor(string name, IReadOnlyList<long> dims, GgmlType type, byte[] data) =>
        AddTensor(name, dims, type, () => data);

    /// <summary>Writes the file (temporary name, then rename). <paramref name="progress"/> gets one line per tensor.</summary>
    public void Write(string path, IProgress<string>? progress = null)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"output directory {dir} does not exist");
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                WriteTo(fs, progress);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Writes the whole file to <paramref name="stream"/> (which is not closed).</summary>
    public void WriteTo(Stream stream, IProgress<string>? progress = null)
    {
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, value) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)value.Type);
            WriteValue(w, value, key);
        }
        long offset = 0;
        var offsets = new long[_tensors.Count];
        for (var i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            offsets[i] = offset;
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (var d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = Align(offset + t.Bytes, Alignment);
        }
        w.Flush();
        Pad(stream, Align(stream.Position, Alignment) - stream.Position);
        var dataStart = stream.Position;
        for (var i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            Pad(stream, dataStart + offsets[i] - stream.Position);
            var start = stream.Position;
            t.Data(stream);
            var written = stream.Position - start;
            if (written != t.Bytes)
                throw new InvalidOperationException($"tensor '{t.Name}' ({t.Type}, dims [{string.Join(", ", t.Dims)}]) produced {written} bytes, expected {t.Bytes}");
            progress?.Report($"{t.Name}: {t.Type} [{string.Join(", ", t.Dims)}]");
        }
        Pad(stream, Align(stream.Position - dataStart, Alignment) - (stream.Position - dataStart));
    }

    internal static long Align(long x, int alignment) => (x + alignment - 1) / alignment * alignment;

    private static void Pad(Stream s, long n)
    {
        if (n < 0) throw new InvalidOperationException("GGUF writer went past a tensor's offset (internal error)");
        Span<byte> zeros = stackalloc byte[64];
        zeros.Clear();
        while (n > 0)
        {
            var k = (int)Math.Min(n, zeros.Length);
            s.Write(zeros[..k]);
            n -= k;
        }
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue v, string key)
    {
        if (v.Type == GgufValueType.Array)
        {
            var et = v.ElementType ?? throw new ArgumentException($"metadata '{key}': array without element type");
            var a = (Array)v.Value;
            w.Write((uint)et);
            w.Write((ulong)a.Length);
            foreach (var item in a) WriteScalar(w, et, item!, key);
            return;
        }
        WriteScalar(w, v.Type, v.Value, key);
    }

    private static void WriteScalar(BinaryWriter w, GgufValueType t, object o, string key)
    {
        switch (t)
        {
            case GgufValueType.UInt8: w.Write((byte)o); break;
            case GgufValueType.Int8: w.Write((sbyte)o); break;
            case GgufValueType.UInt16: w.Write((ushort)o); break;
            case GgufValueType.Int16: w.Write((short)o); break;
            case GgufValueType.UInt32: w.Write((uint)o); break;
            case GgufValueType.Int32: w.Write((int)o); break;
            case GgufValueType.Float32: w.Write((float)o); break;
            case GgufValueType.Bool: w.Write((byte)((bool)o ? 1 : 0)); break;
            case GgufValueType.String: WriteString(w, (string)o); break;
            case GgufValueType.UInt64: w.Write((ulong)o); break;
            case GgufValueType.Int64: w.Write((long)o); break;
            case GgufValueType.Float64: w.Write((double)o); break;
            default: throw new ArgumentException($"metadata '{key}': cannot write a value of type {t}");
        }
    }

    private sealed record PendingTensor(string Name, long[] Dims, GgmlType Type, long Bytes, Action<Stream> Data);
}
