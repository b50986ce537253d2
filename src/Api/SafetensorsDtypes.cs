using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>The safetensors dtype names, their element sizes and TorchSharp types: the one table the reader and the
/// writer share.</summary>
internal static class SafetensorsDtypes
{
    private sealed record Row(string Name, int Size, ScalarType? Torch);

    // Every dtype of the safetensors spec, so that files holding types TorchSharp lacks (U16, F8, ...) still parse and
    // their other tensors stay readable; Torch is null where TorchSharp 0.107 has no such ScalarType.
    private static readonly Row[] Rows =
    [
        new("BOOL", 1, ScalarType.Bool), new("U8", 1, ScalarType.Byte), new("I8", 1, ScalarType.Int8),
        new("F8_E4M3", 1, null), new("F8_E5M2", 1, null),
        new("I16", 2, ScalarType.Int16), new("U16", 2, null), new("F16", 2, ScalarType.Float16),
        new("BF16", 2, ScalarType.BFloat16),
        new("I32", 4, ScalarType.Int32), new("U32", 4, null), new("F32", 4, ScalarType.Float32),
        new("I64", 8, ScalarType.Int64), new("U64", 8, null), new("F64", 8, ScalarType.Float64),
    ];

    private static readonly Dictionary<string, Row> ByName = Rows.ToDictionary(r => r.Name, StringComparer.Ordinal);

    /// <summary>The element size in bytes, or 0 for a name the format does not define.</summary>
    public static int SizeOf(string dtype) => ByName.TryGetValue(dtype, out var r) ? r.Size : 0;

    /// <summary>The TorchSharp type of a dtype name, or null when TorchSharp has none (or the name is unknown).</summary>
    public static ScalarType? ToTorch(string dtype) => ByName.TryGetValue(dtype, out var r) ? r.Torch : null;

    /// <summary>The safetensors name of a TorchSharp type, or null when the format cannot hold it (complex, quantized).</summary>
    public static string? FromTorch(ScalarType t) => Rows.FirstOrDefault(r => r.Torch == t)?.Name;

    public static string Supported => string.Join(", ", Rows.Where(r => r.Torch is not null).Select(r => r.Name));
}
