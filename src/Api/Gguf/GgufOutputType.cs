namespace SlothSharp.Gguf;

/// <summary>What `sloth export --type` writes. The names follow llama.cpp's (f16, q8_0, q4_k_m, ...); the K-quant
/// mixes give some tensors more bits, as <c>llama-quantize</c> does (see <see cref="GgufTensorTypePlan"/>).</summary>
public enum GgufOutputType
{
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_K_M,
    Q5_K_M,
    Q6_K,
}

public static class GgufOutputTypes
{
    public static readonly IReadOnlyList<string> Names = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"];

    /// <summary>Parses a llama.cpp-style type name (case-insensitive).</summary>
    public static GgufOutputType Parse(string name) => name.ToLowerInvariant() switch
    {
        "f32" => GgufOutputType.F32,
        "f16" => GgufOutputType.F16,
        "bf16" => GgufOutputType.BF16,
        "q8_0" => GgufOutputType.Q8_0,
        "q4_0" => GgufOutputType.Q4_0,
        "q4_k_m" => GgufOutputType.Q4_K_M,
        "q5_k_m" => GgufOutputType.Q5_K_M,
        "q6_k" => GgufOutputType.Q6_K,
        _ => throw new ArgumentException($"unknown GGUF type '{name}': use one of {string.Join(", ", Names)}"),
    };

    public static string Name(this GgufOutputType t) => Names[(int)t];

    /// <summary>llama.cpp's <c>llama_ftype</c> number, written as <c>general.file_type</c>.</summary>
    public static uint FileType(this GgufOutputType t) => t switch
    {
        GgufOutputType.F32 => 0,
        GgufOutputType.F16 => 1,
        GgufOutputType.Q4_0 => 2,
        GgufOutputType.Q8_0 => 7,
        GgufOutputType.Q4_K_M => 15,
        GgufOutputType.Q5_K_M => 17,
        GgufOutputType.Q6_K => 18,
        GgufOutputType.BF16 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>The type most 2-D weights get.</summary>
    public static GgmlType DefaultTensorType(this GgufOutputType t) => t switch
    {
        GgufOutputType.F32 => GgmlType.F32,
        GgufOutputType.F16 => GgmlType.F16,
        GgufOutputType.BF16 => GgmlType.BF16,
        GgufOutputType.Q8_0 => GgmlType.Q8_0,
        GgufOutputType.Q4_0 => GgmlType.Q4_0,
        GgufOutputType.Q4_K_M => GgmlType.Q4_K,
        GgufOutputType.Q5_K_M => GgmlType.Q5_K,
        GgufOutputType.Q6_K => GgmlType.Q6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool IsQuantized(this GgufOutputType t) => t is not (GgufOutputType.F32 or GgufOutputType.F16 or GgufOutputType.BF16);
}
