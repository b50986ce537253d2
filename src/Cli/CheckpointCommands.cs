using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>
/// `info`, `dequant`, `quantize`: bitsandbytes 4-bit safetensors checkpoints. Inputs are a .safetensors file, a
/// sharded checkpoint's index, or a model directory (<see cref="SafetensorsCheckpoint.Open"/>). Expected failures are
/// exceptions naming the file or option (ArgumentException, InvalidDataException, SafetensorsFormatException, ...),
/// which Program.cs prints as one line.
/// </summary>
internal static class CheckpointCommands
{
    /// <summary>The NF4 weights of a checkpoint: the keys K that have a K.quant_state.bitsandbytes__nf4 entry.</summary>
    public static List<string> Nf4Prefixes(ITensorSource source) => BitsAndBytesNf4Format.WeightKeys(source);

    private static bool IsQuantPart(string key, HashSet<string> weightKeys) =>
        BitsAndBytesNf4Format.Keys("").Any(suffix => key.EndsWith(suffix, StringComparison.Ordinal) && weightKeys.Contains(key[..^suffix.Length]))
        || weightKeys.Contains(key);

    public static int Info(string path)
    {
        using var ckpt = SafetensorsCheckpoint.Open(path);
        var keys = Nf4Prefixes(ckpt);
        var table = new Table().AddColumns("weight", "shape", "blocksize", "nested", "dtype", "packed bytes");
        foreach (var k in keys)
        {
            var stateKey = k + BitsAndBytesNf4Format.QuantStateSuffix;
            var state = BitsAndBytesNf4Format.ParseQuantState(Encoding.UTF8.GetBytes(ckpt.ReadUtf8(stateKey)), $"{ckpt.FileOf(stateKey)}: '{stateKey}'");
            table.AddRow(Markup.Escape(k), string.Join(" × ", state.Shape), state.Blocksize.ToString(CultureInfo.InvariantCulture),
                state.NestedBlocksize.ToString(CultureInfo.InvariantCulture), state.Dtype.ToString(),
                ckpt.Contains(k) ? ckpt.Entry(k).ByteLength.ToString("N0", CultureInfo.InvariantCulture) : "missing");
        }
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(path)}[/]: {keys.Count} NF4 weight(s), {ckpt.Count} tensors in {ckpt.Files.Count} file(s)");
        AnsiConsole.Write(table);
        return 0;
    }

    public static int Dequant(string input, string output, ScalarType dtype, Device device)
    {
        RequireOutputDirectory(output);
        using var ckpt = SafetensorsCheckpoint.Open(input);
        var keys = Nf4Prefixes(ckpt);
        if (keys.Count == 0)
            throw new InvalidDataException($"{input}: no bitsandbytes NF4 weights (no *{BitsAndBytesNf4Format.QuantStateSuffix} entries)");
        var set = keys.ToHashSet(StringComparer.Ordinal);
        Rewrite(ckpt, output, "dequantizing", (key, outputs) =>
        {
            if (set.Contains(key))
            {
                using var w = BitsAndBytesNf4Format.Read(ckpt, key, device);
                using var dense = w.Dequantize(dtype);
                outputs.Add(new(key, dense.cpu()));
            }
            else if (!IsQuantPart(key, set)) outputs.Add(new(key, ckpt.Read(key)));
        });
        AnsiConsole.MarkupLine($"wrote {keys.Count} dequantized weight(s) as {dtype} to [bold]{Markup.Escape(output)}[/]");
        return 0;
    }

    /// <summary>The regex of <c>quantize --include</c>; an invalid one is a <see cref="CliException"/> on the option.</summary>
    public static Regex IncludePattern(string text)
    {
        try
        {
            return new Regex(text, RegexOptions.None, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException e)
        {
            throw new CliException("--include", $"'{text}' is not a valid regular expression ({CliErrors.Clean(e.Message)})");
        }
    }

    /// <summary>Quantizes the 2-D float tensors whose names <paramref name="include"/> matches; the blocksize is
    /// checked by the option (<see cref="CliOptions.PowerOfTwo"/>) and again by <see cref="Nf4Weight.Quantize"/>.</summary>
    public static int Quantize(string input, string output, int blocksize, Regex include)
    {
        RequireOutputDirectory(output);
        using var ckpt = SafetensorsCheckpoint.Open(input);
        var count = 0;
        Rewrite(ckpt, output, "quantizing", (key, outputs) =>
        {
            var t = ckpt.Read(key);
            if (t.ndim == 2 && t.is_floating_point() && include.IsMatch(key))
            {
                using (t)
                using (var w = Nf4Weight.Quantize(t, blocksize))
                    foreach (var (k, v) in BitsAndBytesNf4Format.Entries(w, key)) outputs.Add(new(k, v.clone()));
                count++;
            }
            else outputs.Add(new(key, t));
        });
        AnsiConsole.MarkupLine($"quantized {count} weight(s) to NF4 (blocksize {blocksize}, double-quantized absmax) in [bold]{Markup.Escape(output)}[/]");
        return 0;
    }

    /// <summary>Writes <paramref name="output"/> from the checkpoint's tensors in key order under a progress bar:
    /// <paramref name="convert"/> adds what each key becomes. Every tensor added is disposed, also on failure.</summary>
    private static void Rewrite(SafetensorsCheckpoint ckpt, string output, string label, Action<string, List<KeyValuePair<string, Tensor>>> convert)
    {
        var outputs = new List<KeyValuePair<string, Tensor>>();
        try
        {
            AnsiConsole.Progress().Start(ctx =>
            {
                var task = ctx.AddTask(label, maxValue: ckpt.Count);
                foreach (var key in ckpt.Keys.Order(StringComparer.Ordinal))
                {
                    convert(key, outputs);
                    task.Increment(1);
                }
            });
            SafetensorsWriter.Save(output, outputs, ckpt.Metadata);
        }
        finally
        {
            foreach (var (_, t) in outputs) t.Dispose();
        }
    }

    private static void RequireOutputDirectory(string output)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(output));
        if (dir is not null && !Directory.Exists(dir))
            throw new ArgumentException($"{output}: the directory {dir} does not exist");
    }
}
