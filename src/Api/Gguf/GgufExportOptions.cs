using TorchSharp;

namespace SlothSharp.Gguf;

/// <summary>Options of <see cref="GgufExporter"/>.</summary>
public sealed class GgufExportOptions
{
    /// <summary>Tensor types of the file (llama.cpp's names: f16, q8_0, q4_k_m, ...).</summary>
    public GgufOutputType Type { get; init; } = GgufOutputType.F16;
    /// <summary><c>general.name</c>; the model directory's name when null.</summary>
    public string? Name { get; init; }
    /// <summary>One line per tensor and a summary.</summary>
    public IProgress<string>? Progress { get; init; }
    /// <summary>Where the Q8_0, Q4_K, Q5_K and Q6_K tensors are quantized: null (default) = the C# quantizers on the
    /// CPU cores; a CUDA device = libslothsharp's CUDA kernels (each slice of rows copied there, the bytes copied
    /// back); the CPU device = libslothsharp's CPU twin of those kernels. Every choice writes the same bytes; the other
    /// types (F16, BF16, Q4_0, Q5_0, Q5_1) always use the C# quantizers.</summary>
    public torch.Device? QuantizeDevice { get; init; }
    /// <summary>Export weights holding NaN or ±infinity as they are. By default (false) the export stops at the first
    /// such tensor, names it with the count and the first position (row, column of the checkpoint's layout), and writes
    /// nothing: those weights come from a broken checkpoint (a diverged fine-tune, a bad merge) and make a GGUF whose
    /// every answer is garbage.</summary>
    public bool AllowNonFinite { get; init; }
}

/// <summary>What an export wrote: the file, llama.cpp architecture, output type, tensor count, file size, how many
/// tensors got each ggml type, and warnings for the user.</summary>
public sealed record GgufExportResult(string Path, string Architecture, GgufOutputType Type, int TensorCount, long FileBytes,
    IReadOnlyDictionary<GgmlType, int> TensorTypes, IReadOnlyList<string> Warnings)
{
    /// <summary>Per ggml type: the float32 weights converted to it and the time the conversion took (quantization
    /// alone: not reading, permuting or writing). Empty for exports that do not measure it (GGUF LoRA).</summary>
    public IReadOnlyDictionary<GgmlType, (long Weights, TimeSpan Time)> ConversionTimes { get; init; } =
        new Dictionary<GgmlType, (long, TimeSpan)>();

    /// <summary>Where the export's wall time went (null for exports that do not measure it: GGUF LoRA).</summary>
    public GgufExportStages? Stages { get; init; }

    /// <summary>Wall time of the whole export.</summary>
    public TimeSpan Elapsed { get; init; }
}
