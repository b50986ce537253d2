using SlothSharp.Gguf;

namespace SlothSharp.Cli;

/// <summary>`sloth info model.gguf`: the header of a GGUF file (metadata, arrays summarized; tensor types and the
/// first tensors), read with the hardened <see cref="GgufReader"/>.</summary>
internal static class GgufInfoCommand
{
    public static bool IsGguf(string path)
    {
        if (!File.Exists(path)) return false;
        using var fs = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[4];
        return fs.Read(magic) == 4 && BitConverter.ToUInt32(magic) == GgufWriter.Magic;
    }

    public static int Info(string path, TextWriter output, int tensorLines = 24)
    {
        var g = GgufReader.Open(path);
        output.WriteLine($"{path}: GGUF v{g.Version}, {g.Metadata.Count} metadata keys, {g.Tensors.Count} tensors, alignment {g.Alignment}, {new FileInfo(path).Length / 1048576.0:F1} MiB");
        foreach (var (key, value) in g.MetadataList)
            output.WriteLine($"  {key} = {value}");
        var types = g.Tensors.GroupBy(t => t.Type).Select(grp => $"{grp.Count()} {(Enum.IsDefined(grp.Key) ? grp.Key.ToString() : $"type {(uint)grp.Key}")}");
        output.WriteLine($"tensors: {string.Join(", ", types)}; {g.Tensors.Sum(t => t.ElementCount):N0} elements");
        foreach (var t in g.Tensors.Take(tensorLines))
            output.WriteLine($"  {t.Name,-36} {t.Type,-5} [{string.Join(", ", t.Dims)}]");
        if (g.Tensors.Count > tensorLines) output.WriteLine($"  ... {g.Tensors.Count - tensorLines} more");
        return 0;
    }
}
