using System.Globalization;

namespace SlothSharp.Gguf;

/// <summary>
/// One GGUF metadata value: a scalar (boxed .NET value of the matching type: byte, sbyte, ushort, short, uint, int,
/// float, bool, string, ulong, long, double) or an array (<see cref="ElementType"/> set, <see cref="Value"/> a .NET
/// array of the element's type; string arrays are <c>string[]</c>). GGUF forbids nothing about nesting, but llama.cpp
/// never nests arrays, and neither do we.
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType? ElementType = null)
{
    public static GgufValue U8(byte v) => new(GgufValueType.UInt8, v);
    public static GgufValue I8(sbyte v) => new(GgufValueType.Int8, v);
    public static GgufValue U16(ushort v) => new(GgufValueType.UInt16, v);
    public static GgufValue I16(short v) => new(GgufValueType.Int16, v);
    public static GgufValue U32(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue I32(int v) => new(GgufValueType.Int32, v);
    public static GgufValue F32(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Bool(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Str(string v) => new(GgufValueType.String, v);
    public static GgufValue U64(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue I64(long v) => new(GgufValueType.Int64, v);
    public static GgufValue F64(double v) => new(GgufValueType.Float64, v);

    /// <summary>An array value; <paramref name="values"/> must be a .NET array whose element type matches
    /// <paramref name="elementType"/> (e.g. int[] for Int32, string[] for String).</summary>
    public static GgufValue Array(GgufValueType elementType, System.Array values)
    {
        if (elementType == GgufValueType.Array) throw new ArgumentException("nested GGUF arrays are not supported");
        if (values.GetType().GetElementType() != ClrType(elementType))
            throw new ArgumentException($"a GGUF {elementType} array needs a {ClrType(elementType).Name}[], got {values.GetType().Name}");
        return new(GgufValueType.Array, values, elementType);
    }

    public static GgufValue Strings(IEnumerable<string> v) => Array(GgufValueType.String, v.ToArray());
    public static GgufValue Int32s(IEnumerable<int> v) => Array(GgufValueType.Int32, v.ToArray());
    public static GgufValue Float32s(IEnumerable<float> v) => Array(GgufValueType.Float32, v.ToArray());

    /// <summary>The .NET type that holds one value of <paramref name="t"/>.</summary>
    public static Type ClrType(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 => typeof(byte),
        GgufValueType.Int8 => typeof(sbyte),
        GgufValueType.UInt16 => typeof(ushort),
        GgufValueType.Int16 => typeof(short),
        GgufValueType.UInt32 => typeof(uint),
        GgufValueType.Int32 => typeof(int),
        GgufValueType.Float32 => typeof(float),
        GgufValueType.Bool => typeof(bool),
        GgufValueType.String => typeof(string),
        GgufValueType.UInt64 => typeof(ulong),
        GgufValueType.Int64 => typeof(long),
        GgufValueType.Float64 => typeof(double),
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "no scalar .NET type for this GGUF type"),
    };

    /// <summary>The value as a 64-bit integer (any integer type); throws for other types.</summary>
    public long AsInt64() => Value switch
    {
        byte v => v, sbyte v => v, ushort v => v, short v => v, uint v => v, int v => v, long v => v,
        ulong v => checked((long)v),
        _ => throw new InvalidOperationException($"GGUF value of type {Type} is not an integer"),
    };

    /// <summary>The value as a double (any numeric type).</summary>
    public double AsDouble() => Value switch
    {
        float v => v, double v => v,
        _ => AsInt64(),
    };

    public string AsString() => Value as string ?? throw new InvalidOperationException($"GGUF value of type {Type} is not a string");

    /// <summary>Short human-readable form (arrays: element type, length and the first few items).</summary>
    public override string ToString()
    {
        if (Value is System.Array a)
        {
            var head = a.Cast<object>().Take(6).Select(Format);
            return $"[{ElementType} x {a.Length}] {string.Join(", ", head)}{(a.Length > 6 ? ", ..." : "")}";
        }
        return Format(Value);
    }

    private static string Format(object o) => o switch
    {
        string s => s.Length > 80 ? $"\"{s[..77]}...\"" : $"\"{s}\"",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => o.ToString() ?? "",
    };
}
