using System.Text.RegularExpressions;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>`info`, `dequant`, `quantize`: bitsandbytes 4-bit safetensors checkpoints.</summary>
internal static class CheckpointCommands
{
    private const string StateSuffix = ".quant_state.bitsandbytes__nf4";
    private static readonly string[] QuantKeySuffixes = [".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", StateSuffix];

    /// <summary>The NF4 weights of a file: the prefixes that have a quant_state entry.</summary>
    public static List<string> Nf4Prefixes(SafetensorsReader r) =>
        r.Entries.Keys.Where(k => k.EndsWith(StateSuffix, StringComparison.Ordinal)).Select(k => k[..^StateSuffix.Length]).Order().ToList();

    private static bool IsQuantPart(SafetensorsReader r, string key, HashSet<string> prefixes) =>
        prefixes.Contains(key) || QuantKeySuffixes.Any(s => key.EndsWith(s, StringComparison.Ordinal) && prefixes.Contains(key[..^s.Length]));

    public static int Info(string path)
    {
        using var r = new SafetensorsReader(path);
        var prefixes = Nf4Prefixes(r);
        var table = new Table().AddColumns("weight", "shape", "blocksize", "nested", "dtype", "packed bytes");
        foreach (var p in prefixes)
        {
            using var w = Nf4Weight.FromSafetensors(r, p);
            table.AddRow(Markup.Escape(p), string.Join(" × ", w.Shape), w.Blocksize.ToString(), w.NestedBlocksize.ToString(),
                w.OriginalDtype.ToString(), w.Packed.numel().ToString("N0"));
        }
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(path)}[/]: {prefixes.Count} NF4 weight(s), {r.Entries.Count} tensors");
        AnsiConsole.Write(table);
        return 0;
    }

    public static int Dequant(string input, string output, string dtypeName, string device)
    {
        var dtype = ParseDtype(dtypeName);
        var dev = ParseDevice(device);
        using var r = new SafetensorsReader(input);
        var prefixes = Nf4Prefixes(r);
        if (prefixes.Count == 0) throw new InvalidDataException($"{input} has no bitsandbytes NF4 weights (no *{StateSuffix} entries)");
        var set = prefixes.ToHashSet();
        var outputs = new List<KeyValuePair<string, Tensor>>();
        AnsiConsole.Progress().Start(ctx =>
        {
            var task = ctx.AddTask("dequantizing", maxValue: r.Entries.Count);
            foreach (var key in r.Entries.Keys.Order())
            {
                if (set.Contains(key))
                {
                    using var w = Nf4Weight.FromSafetensors(r, key);
                    using var onDev = w.To(dev);
                    outputs.Add(new(key, onDev.Dequantize(dtype).cpu()));
                }
                else if (!IsQuantPart(r, key, set)) outputs.Add(new(key, r.Read(key)));
                task.Increment(1);
            }
        });
        SafetensorsWriter.Save(output, outputs, r.Metadata);
        foreach (var (_, t) in outputs) t.Dispose();
        AnsiConsole.MarkupLine($"wrote {prefixes.Count} dequantized weight(s) as {dtype} to [bold]{Markup.Escape(output)}[/]");
        return 0;
    }

    public static int Quantize(string input, string output, int blocksize, string include)
    {
        var pattern = new Regex(include);
        using var r = new SafetensorsReader(input);
        var outputs = new List<KeyValuePair<string, Tensor>>();
        var count = 0;
        AnsiConsole.Progress().Start(ctx =>
        {
            var task = ctx.AddTask("quantizing", maxValue: r.Entries.Count);
            foreach (var key in r.Entries.Keys.Order())
            {
                var t = r.Read(key);
                if (t.ndim == 2 && t.is_floating_point() && pattern.IsMatch(key))
                {
                    using var w = Nf4Weight.Quantize(t, blocksize);
                    foreach (var (k, v) in w.ToSafetensorsEntries(key)) outputs.Add(new(k, v.clone()));
                    t.Dispose();
                    count++;
                }
                else outputs.Add(new(key, t));
                task.Increment(1);
            }
        });
        SafetensorsWriter.Save(output, outputs, r.Metadata);
        foreach (var (_, t) in outputs) t.Dispose();
        AnsiConsole.MarkupLine($"quantized {count} weight(s) to NF4 (blocksize {blocksize}, double-quantized absmax) in [bold]{Markup.Escape(output)}[/]");
        return 0;
    }

    public static ScalarType ParseDtype(string name) => name switch
    {
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "float16" => ScalarType.Float16,
        "fp32" or "float32" => ScalarType.Float32,
        _ => throw new ArgumentException($"unknown dtype '{name}' (bf16, fp16, fp32)"),
    };

    public static Device ParseDevice(string name)
    {
        if (name == "cpu") return CPU;
        if (name.StartsWith("cuda", StringComparison.Ordinal))
        {
            if (!cuda.is_available() || !CudaDevice.IsAvailable)
                throw new ArgumentException("--device cuda needs a CUDA GPU, TorchSharp with a CUDA libtorch and a CUDA build of libslothsharp");
            return new Device(name);
        }
        throw new ArgumentException($"unknown device '{name}' (cpu, cuda, cuda:N)");
    }
}
