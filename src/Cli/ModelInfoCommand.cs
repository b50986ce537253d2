using System.Globalization;
using System.Text.Json.Nodes;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using Spectre.Console;

namespace SlothSharp.Cli;

/// <summary>`sloth info PATH`: a model directory (config.json inside) is described (architecture, parameters, NF4 or
/// dense, memory to load it, tokenizer); anything else is a safetensors file (<see cref="CheckpointCommands.Info"/>).</summary>
internal static class ModelInfoCommand
{
    public static int Info(string path)
    {
        if (Directory.Exists(path) && File.Exists(Path.Combine(path, "config.json"))) return DescribeModel(path, Console.Out);
        if (Directory.Exists(path))
            throw new FileNotFoundException($"{Path.Combine(path, "config.json")}: not found (sloth info takes a model directory or a safetensors file)");
        if (GgufInfoCommand.IsGguf(path)) return GgufInfoCommand.Info(path, Console.Out);
        return CheckpointCommands.Info(path);
    }

    /// <summary>Parameter counts of a config: the decoder's linear layers (NF4 when quantized) and the rest
    /// (embeddings, norms, LM head, biases; always dense), from the family's weight layout.</summary>
    public static (long Linear, long Dense) Parameters(ModelConfig c)
    {
        long linear = 0, dense = 0;
        foreach (var (_, shape, role) in DecoderLayout.Tensors(c))
        {
            var n = shape.Aggregate(1L, (a, b) => a * b);
            if (role == TensorRole.Projection) linear += n;
            else dense += n;
        }
        return (linear, dense);
    }

    /// <summary>Bytes per NF4 weight with bitsandbytes' double quantization: 4 bits, one 8-bit absmax code per 64
    /// weights, one float32 absmax per 256 codes.</summary>
    public const double Nf4BytesPerWeight = 0.5 + 1.0 / 64 + 4.0 / (64 * 256);

    public static int DescribeModel(string dir, TextWriter output)
    {
        var configPath = Path.Combine(dir, "config.json");
        var config = ModelConfig.Load(configPath);
        var quantized = IsBnb4bit(config.Raw);
        var (linear, dense) = Parameters(config);
        var weights = WeightFiles(dir);
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });
        string N(long v) => v.ToString("N0", CultureInfo.InvariantCulture);
        string Gb(double bytes) => bytes >= 1L << 30 ? (bytes / (1L << 30)).ToString("F2", CultureInfo.InvariantCulture) + " GiB"
                                 : (bytes / (1L << 20)).ToString("F2", CultureInfo.InvariantCulture) + " MiB";

        console.MarkupLine($"[bold]{Markup.Escape(dir)}[/]: {Markup.Escape(config.Family.Name)} ({Markup.Escape(config.ModelType)}), " +
                           (quantized ? "bitsandbytes 4-bit NF4 checkpoint" : "dense checkpoint"));
        var arch = new Table().AddColumns("field", "value");
        arch.AddRow("layers", config.NumHiddenLayers.ToString(CultureInfo.InvariantCulture));
        arch.AddRow("hidden / MLP", $"{config.HiddenSize} / {config.IntermediateSize}");
        arch.AddRow("heads (query / key-value) × head_dim", $"{config.NumAttentionHeads} / {config.NumKeyValueHeads} × {config.HeadDim}");
        arch.AddRow("vocabulary", N(config.VocabSize));
        arch.AddRow("max positions", N(config.MaxPositionEmbeddings));
        arch.AddRow("rope", Markup.Escape(config.LocalRope is { } local ? $"{config.Rope}; sliding layers: {local}" : config.Rope.ToString()));
        if (config.SlidingWindow is { } window)
            arch.AddRow("sliding window", $"{window} tokens on {Enumerable.Range(0, config.NumHiddenLayers).Count(i => config.WindowOf(i) is not null)} of {config.NumHiddenLayers} layers");
        var extras = new List<string>();
        if (config.QkNorm) extras.Add("q/k norms");
        if (config.SandwichNorms) extras.Add("4 norms per layer, (1 + w)");
        if (config.AttentionSoftcap is { } ac) extras.Add(string.Create(CultureInfo.InvariantCulture, $"attention soft-cap {ac}"));
        if (config.FinalLogitSoftcap is { } fc) extras.Add(string.Create(CultureInfo.InvariantCulture, $"logit soft-cap {fc}"));
        if (config.FusedQkv) extras.Add("fused qkv / gate_up");
        if (extras.Count > 0) arch.AddRow("family specifics", Markup.Escape(string.Join(", ", extras)));
        arch.AddRow("tied embeddings", config.TieWordEmbeddings ? "yes" : "no");
        arch.AddRow("parameters", $"{N(linear + dense)} ({N(linear)} in decoder linear layers, {N(dense)} embeddings/norms/head)");
        arch.AddRow("weights", Markup.Escape(weights));
        console.Write(arch);

        // Weights only; activations, the KV cache and (for training) LoRA and optimizer state come on top.
        var mem = new Table().AddColumns("load as", "compute bf16/fp16", "compute fp32");
        mem.AddRow("NF4 (default)", Gb(linear * Nf4BytesPerWeight + dense * 2.0), Gb(linear * Nf4BytesPerWeight + dense * 4.0));
        mem.AddRow("dense (Quantize = false)", Gb((linear + dense) * 2.0), Gb((linear + dense) * 4.0));
        console.MarkupLine("estimated memory for the weights (activations and KV cache extra):");
        console.Write(mem);
        console.MarkupLine(Markup.Escape("tokenizer: " + DescribeTokenizer(dir)));
        return 0;
    }

    private static bool IsBnb4bit(JsonObject raw) =>
        raw["quantization_config"] is JsonObject q && q["quant_method"]?.ToString() == "bitsandbytes" &&
        ((q["load_in_4bit"] ?? q["_load_in_4bit"])?.ToString() is "true" or "True");

    private static string WeightFiles(string dir)
    {
        var index = Path.Combine(dir, "model.safetensors.index.json");
        var files = File.Exists(index)
            ? Directory.GetFiles(dir, "*.safetensors").Order().ToArray()
            : File.Exists(Path.Combine(dir, "model.safetensors")) ? [Path.Combine(dir, "model.safetensors")] : [];
        if (files.Length == 0) return "none found (model.safetensors or model.safetensors.index.json)";
        var bytes = files.Sum(f => new FileInfo(f).Length);
        return $"{files.Length} safetensors file(s), {(bytes / (double)(1L << 20)).ToString("F1", CultureInfo.InvariantCulture)} MiB";
    }

    private static string DescribeTokenizer(string dir)
    {
        try
        {
            var tok = HfTokenizer.FromDirectory(dir);
            string T(int? id) => id is { } v ? $"{tok.IdToToken(v)} ({v})" : "none";
            return $"byte-level BPE, {tok.VocabSize:N0} ids, {tok.MergeCount:N0} merges, {tok.SpecialTokenIds.Count} special tokens; " +
                   $"BOS {T(tok.BosTokenId)}, EOS {T(tok.EosTokenId)}, PAD {T(tok.PadTokenId)}";
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            return $"not usable: {e.Message}";
        }
    }
}
