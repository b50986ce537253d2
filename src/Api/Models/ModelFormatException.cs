namespace SlothSharp.Models;

/// <summary>(An IOException: InvalidDataException is sealed.) A model directory, config or checkpoint that SlothSharp cannot use: names the file and the field (or
/// tensor) at fault, so a CLI can report <c>error: FILE: message</c>.</summary>
public sealed class ModelFormatException : IOException
{
    public ModelFormatException(string file, string? field, string message, Exception? inner = null)
        : base(field is null ? $"{file}: {message}" : $"{file}: {field}: {message}", inner)
    {
        File = file;
        Field = field;
    }

    /// <summary>The file at fault (config.json, a safetensors file, a directory).</summary>
    public string File { get; }

    /// <summary>The JSON field or tensor name at fault, when there is one.</summary>
    public string? Field { get; }
}
