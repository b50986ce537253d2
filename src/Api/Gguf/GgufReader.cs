using System.Text;

namespace SlothSharp.Gguf;

/// <summary>
/// Reads the header of a GGUF file (v2 or v3): metadata, tensor infos and where each tensor's data lies. Hardened
/// against damaged or hostile files: every count and length is checked against the bytes that remain before anything
/// is allocated, every tensor must lie inside the file, and every problem is an <see cref="InvalidDataException"/>
/// naming the file, the byte offset and the field.
/// </summary>
public sealed class GgufReader
{
    /// <summary>ggml tensors have at most 4 dimensions (GGML_MAX_DIMS).</summary>
    public const int MaxDims = 4;

    private GgufReader(string path, uint version, List<KeyValuePair<string, GgufValue>> metadata, List<GgufTensorInfo> tensors, int alignment, long dataStart)
    {
        Path = path;
        Version = version;
        MetadataList = metadata;
        Metadata = metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
        Tensors = tensors;
        Alignment = alignment;
        DataStart = dataStart;
    }

    public string Path { get; }
    public uint Version { get; }
    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> MetadataList { get; }
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    public int Alignment { get; }
    /// <summary>Absolute offset of the data section.</summary>
    public long DataStart { get; }

    public GgufTensorInfo Tensor(string name) =>
        Tensors.FirstOrDefault(t => t.Name == name) ?? throw new KeyNotFoundException($"{Path}: no tensor named '{name}'");

    /// <summary>The raw bytes of one tensor (as stored: quantized blocks for quantized types).</summary>
    public byte[] ReadTensorBytes(GgufTensorInfo t)
    {
        if (t.ByteCount < 0) throw new InvalidDataException($"{Path}: tensor '{t.Name}' has ggml type {(uint)t.Type}, which SlothSharp cannot size");
        if (t.ByteCount > Array.MaxLength) throw new InvalidDataException($"{Path}: tensor '{t.Name}' is {t.ByteCount} bytes, too large for one array");
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        fs.Position = t.DataOffset;
        var buf = new byte[t.ByteCount];
        fs.ReadExactly(buf);
        return buf;
    }

    /// <summary>Reads and validates the header of <paramref name="path"/>.</summary>
    public static GgufReader Open(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        return Read(fs, path);
    }

    /// <summary>Reads the header from a seekable stream; <paramref name="name"/> is used in error messages.</summary>
    public static GgufReader Read(Stream stream, string name)
    {
        var r = new Cursor(stream, name);
        var magic = r.U32("magic");
        if (magic != GgufWriter.Magic)
            throw r.Error(0, "magic", $"not a GGUF file (first bytes 0x{magic:X8}, expected \"GGUF\")");
        var version = r.U32("version");
        if (version is not (2 or 3)) throw r.Error(4, "version", $"GGUF version {version} is not supported (2 or 3)");
        var tensorCount = r.U64("tensor_count");
        var kvCount = r.U64("metadata_kv_count");
        // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least 8 + 4 + 8 + 4 + 8.
        if (kvCount > (ulong)(r.Remaining / 13)) throw r.Error(16, "metadata_kv_count", $"{kvCount} entries cannot fit in the {r.Remaining} bytes left");
        if (tensorCount > (ulong)(r.Remaining / 32)) throw r.Error(8, "tensor_count", $"{tensorCount} tensors cannot fit in the {r.Remaining} bytes left");

        var metadata = new List<KeyValuePair<string, GgufValue>>((int)kvCount);
        var keys = new HashSet<string>();
        for (ulong i = 0; i < kvCount; i++)
        {
            var at = r.Position;
            var key = r.Str($"metadata[{i}].key");
            if (!keys.Add(key)) throw r.Error(at, $"metadata[{i}].key", $"duplicate key '{key}'");
            var type = r.U32($"metadata '{key}' type");
            metadata.Add(new(key, r.Value((GgufValueType)type, $"metadata '{key}'")));
        }

        var alignment = 32;
        if (metadata.FirstOrDefault(kv => kv.Key == "general.alignment").Value is { } a)
        {
            if (a.Type != GgufValueType.UInt32) throw r.Error(-1, "general.alignment", $"must be a UInt32, is {a.Type}");
            var v = (uint)a.Value;
            if (v == 0 || (v & (v - 1)) != 0 || v > 1 << 20) throw r.Error(-1, "general.alignment", $"{v} is not a power of two up to 1 MiB");
            alignment = (int)v;
        }

        var infos = new List<(string Name, long[] Dims, uint Type, ulong Offset, long At)>((int)tensorCount);
        var names = new HashSet<string>();
        for (ulong i = 0; i < tensorCount; i++)
        {
            var at = r.Position;
            var tname = r.Str($"tensor[{i}].name");
            if (!names.Add(tname)) throw r.Error(at, $"tensor[{i}].name", $"duplicate tensor name '{tname}'");
            var nd = r.U32($"tensor '{tname}' n_dims");
            if (nd is 0 or > MaxDims) throw r.Error(r.Position - 4, $"tensor '{tname}' n_dims", $"{nd} dimensions (ggml allows 1 to {MaxDims})");
            var dims = new long[nd];
            long elements = 1;
            for (var d = 0; d < nd; d++)
            {
                var v = r.U64($"tensor '{tname}' dims[{d}]");
                if (v == 0 || v > long.MaxValue / 2) throw r.Error(r.Position - 8, $"tensor '{tname}' dims[{d}]", $"dimension {v} is out of range");
                dims[d] = (long)v;
                try { elements = checked(elements * dims[d]); }
                catch (OverflowException) { throw r.Error(r.Position - 8, $"tensor '{tname}' dims", "element count overflows 64 bits"); }
            }
            var type = r.U32($"tensor '{tname}' type");
            var off = r.U64($"tensor '{tname}' offset");
            infos.Add((tname, dims, type, off, at));
        }

        var dataStart = GgufWriter.Align(r.Position, alignment);
        var fileLength = stream.Length;
        if (infos.Count > 0 && dataStart > fileLength)
            throw r.Error(r.Position, "data section", $"file ends at {fileLength} before the data section at {dataStart}");
        var tensors = new List<GgufTensorInfo>(infos.Count);
        foreach (var t in infos)
        {
            if (t.Offset % (ulong)alignment != 0)
                throw r.Error(t.At, $"tensor '{t.Name}' offset", $"{t.Offset} is not a multiple of the alignment {alignment}");
            var gt = (GgmlType)t.Type;
            long bytes = -1;
            if (GgmlTypeInfo.IsKnown(gt))
            {
                if (t.Dims[0] % GgmlTypeInfo.BlockSize(gt) != 0)
                    throw r.Error(t.At, $"tensor '{t.Name}' dims[0]", $"row length {t.Dims[0]} is not a multiple of {gt}'s block size {GgmlTypeInfo.BlockSize(gt)}");
                try { bytes = GgmlTypeInfo.TensorBytes(gt, t.Dims); }
                catch (OverflowException) { throw r.Error(t.At, $"tensor '{t.Name}' dims", "byte size overflows 64 bits"); }
            }
            else if (t.Type > 1000) throw r.Error(t.At, $"tensor '{t.Name}' type", $"ggml type {t.Type} does not exist");
            if (t.Offset > (ulong)(fileLength - dataStart) || (bytes >= 0 && (long)t.Offset + bytes > fileLength - dataStart))
                throw r.Error(t.At, $"tensor '{t.Name}' offset", $"data [{t.Offset}, +{bytes}) lies past the end of the file ({fileLength - dataStart} data bytes)");
            tensors.Add(new GgufTensorInfo(t.Name, t.Dims, gt, dataStart + (long)t.Offset, bytes));
        }
        return new GgufReader(name, version, metadata, tensors, alignment, dataStart);
    }

    /// <summary>Bounds-checked little-endian reads over the header.</summary>
    private sealed class Cursor(Stream s, string name)
    {
        /// <summary>No single string in a sane GGUF is larger than this (chat templates are kilobytes).</summary>
        private const long MaxStringBytes = 64L << 20;
        private readonly byte[] _buf = new byte[8];
        public long Position => s.Position;
        public long Remaining => s.Length - s.Position;

        public InvalidDataException Error(long offset, string field, string what) =>
            new(offset >= 0 ? $"{name}: invalid GGUF at byte {offset} ({field}): {what}" : $"{name}: invalid GGUF ({field}): {what}");

        private ReadOnlySpan<byte> Take(int n, string field)
        {
            if (Remaining < n) throw Error(Position, field, $"file ends after {s.Length} bytes, {n} more needed");
            s.ReadExactly(_buf, 0, n);
            return _buf.AsSpan(0, n);
        }

        public byte U8(string f) => Take(1, f)[0];
        public ushort U16(string f) => BitConverter.ToUInt16(Take(2, f));
        public uint U32(string f) => BitConverter.ToUInt32(Take(4, f));
        public ulong U64(string f) => BitConverter.ToUInt64(Take(8, f));

        public string Str(string field)
        {
            var at = Position;
            var len = U64(field + " length");
            if (len > (ulong)Remaining) throw Error(at, field, $"string length {len} exceeds the {Remaining} bytes left");
            if (len > MaxStringBytes) throw Error(at, field, $"string length {len} exceeds the {MaxStringBytes}-byte limit");
            var bytes = new byte[len];
            s.ReadExactly(bytes);
            try { return new UTF8Encoding(false, true).GetString(bytes); }
            catch (DecoderFallbackException) { throw Error(at, field, "string is not valid UTF-8"); }
        }

        private static int MinBytes(GgufValueType t) => t switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            _ => 8, // 64-bit scalars, and a string's length prefix
        };

        public GgufValue Value(GgufValueType t, string field)
        {
            var at = Position;
            if (t == GgufValueType.Array)
            {
                var et = (GgufValueType)U32(field + " element type");
                if (et == GgufValueType.Array) throw Error(at, field, "nested arrays are not supported");
                if (!Enum.IsDefined(et)) throw Error(at, field, $"unknown array element type {(uint)et}");
                var count = U64(field + " count");
                if (count > (ulong)(Remaining / MinBytes(et)))
                    throw Error(at + 4, field + " count", $"{count} elements of {et} cannot fit in the {Remaining} bytes left");
                if (count > (ulong)Array.MaxLength) throw Error(at + 4, field + " count", $"{count} elements are more than one array can hold");
                var arr = Array.CreateInstance(GgufValue.ClrType(et), (int)count);
                for (var i = 0; i < (int)count; i++) arr.SetValue(Scalar(et, $"{field}[{i}]"), i);
                return new GgufValue(GgufValueType.Array, arr, et);
            }
            if (!Enum.IsDefined(t)) throw Error(at - 4, field + " type", $"unknown value type {(uint)t}");
            return new GgufValue(t, Scalar(t, field));
        }

        private object Scalar(GgufValueType t, string field) => t switch
        {
            GgufValueType.UInt8 => U8(field),
            GgufValueType.Int8 => (sbyte)U8(field),
            GgufValueType.UInt16 => U16(field),
            GgufValueType.Int16 => (short)U16(field),
            GgufValueType.UInt32 => U32(field),
            GgufValueType.Int32 => (int)U32(field),
            GgufValueType.Float32 => BitConverter.UInt32BitsToSingle(U32(field)),
            GgufValueType.Bool => U8(field) switch
            {
                0 => false,
                1 => true,
                var b => throw Error(Position - 1, field, $"bool byte {b} is neither 0 nor 1"),
            },
            GgufValueType.String => Str(field),
            GgufValueType.UInt64 => U64(field),
            GgufValueType.Int64 => (long)U64(field),
            GgufValueType.Float64 => BitConverter.UInt64BitsToDouble(U64(field)),
            _ => throw Error(Position, field, $"unknown value type {(uint)t}"),
        };
    }
}
