namespace SlothSharp;

/// <summary>
/// (An <see cref="IOException"/>: <see cref="InvalidDataException"/> is sealed.) A safetensors file (or a sharded checkpoint's index) that breaks the format: truncated, a bad header, offsets that
/// do not tile the data, an unknown dtype, a missing shard. The message names the file, the tensor (when one is at
/// fault) and the problem; <see cref="FilePath"/> and <see cref="TensorName"/> carry them for programs.
/// </summary>
public sealed class SafetensorsFormatException : IOException
{
    public SafetensorsFormatException(string filePath, string? tensorName, string problem, Exception? inner = null)
        : base(Format(filePath, tensorName, problem), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
        Problem = problem;
    }

    /// <summary>The file at fault.</summary>
    public string FilePath { get; }
    /// <summary>The tensor at fault, or null when the problem is the file as a whole (its length, its header).</summary>
    public string? TensorName { get; }
    /// <summary>What is wrong, without the file and tensor.</summary>
    public string Problem { get; }

    private static string Format(string file, string? tensor, string problem) =>
        tensor is null ? $"{file}: {problem}" : $"{file}: tensor '{tensor}': {problem}";
}
