using System.Globalization;
using Microsoft.ML.Tokenizers;
using SlothSharp.Models;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli.Demo;

/// <summary>Settings of one loss-comparison run.</summary>
internal sealed record DemoSettings(string Device, int Steps, string Output, string Size, int? Layers, int? Batch, int? Seq,
                                    bool Chunked, ulong Seed, double? LearningRate, string? Only);

/// <summary>Widths of the comparison's random Llama (and its LoRA).</summary>
internal sealed record CompareShape(int Vocab, int Hidden, int Layers, int Heads, int KvHeads, int Intermediate, int LoraRank, double LoraAlpha)
{
    public ModelConfig ToConfig() => ModelPresets.Tiny with
    {
        VocabSize = Vocab, HiddenSize = Hidden, IntermediateSize = Intermediate, NumHiddenLayers = Layers, NumAttentionHeads = Heads,
        NumKeyValueHeads = KvHeads, HeadDim = Hidden / Heads, RmsNormEps = 1e-5, Rope = RopeSpec.Default(500_000),
        TieWordEmbeddings = false, MaxPositionEmbeddings = 8192, BosTokenId = null, EosTokenIds = [], PadTokenId = null,
    };
}

/// <summary>`sloth demo --compare-losses`: trains the same QLoRA Llama (random NF4 weights written in Hugging Face format)
/// two or three times from the same seed on the same tokens, once with the naive loss (full logits, float32 upcast),
/// once with FusedLinearCrossEntropy (and once with the generic chunked loss), each in its own process, and compares
/// the per-step losses, time and peak memory. Exit code 3 when the curves differ beyond the tolerance.</summary>
internal static class CompareLosses
{
    /// <summary>The comparison models (--size) and the variants one run trains (--only; naive and fused always).</summary>
    public static readonly string[] Sizes = ["tiny", "1b"], Variants = ["naive", "fused", "chunked"];

    /// <summary>The command after parsing: the settings' values were checked by the options.</summary>
    public static int Run(DemoSettings s)
    {
        var device = CliOptions.ToDevice(s.Device);
        var onGpu = device.type == TorchSharp.DeviceType.CUDA;
        var dtype = onGpu ? ScalarType.BFloat16 : ScalarType.Float32;
        Directory.CreateDirectory(s.Output);

        var tokenizer = TiktokenTokenizer.CreateForModel("gpt-4");  // cl100k_base, from the data package
        var tokens = tokenizer.EncodeToIds(Corpus.Generate(20_000)).ToArray();
        var vocab = tokens.Max() + 1 > 100_277 ? tokens.Max() + 1 : 100_277;  // cl100k: 100,256 merges + specials
        var cfg = s.Size switch
        {
            "tiny" => new CompareShape(vocab, Hidden: 64, Layers: s.Layers ?? 2, Heads: 4, KvHeads: 2, Intermediate: 176, LoraRank: 8, LoraAlpha: 16),
            "1b" => new CompareShape(vocab, Hidden: 2048, Layers: s.Layers ?? 4, Heads: 16, KvHeads: 8, Intermediate: 8192, LoraRank: 16, LoraAlpha: 32),
            _ => throw new ArgumentException($"unknown --size '{s.Size}' (tiny, 1b)"),
        };
        var (batch, seq) = (s.Batch ?? (s.Size == "tiny" ? 4 : 8), s.Seq ?? (s.Size == "tiny" ? 64 : 1024));
        var deviceName = onGpu ? $"{CudaDevice.Name(device.index < 0 ? 0 : device.index)}" : $"CPU ({Environment.ProcessorCount} cores)";
        AnsiConsole.MarkupLine($"[bold]SlothSharp loss comparison[/]: QLoRA Llama, {cfg.Layers} layers, hidden {cfg.Hidden}, {cfg.Heads} heads / {cfg.KvHeads} KV, " +
                               $"MLP {cfg.Intermediate}, vocab {cfg.Vocab:N0} (cl100k BPE), LoRA r={cfg.LoraRank}; {batch}×{seq} tokens/step, {s.Steps} steps, {dtype} on {Markup.Escape(deviceName)}");
        AnsiConsole.MarkupLine($"corpus: {tokens.Length:N0} tokens from the built-in generator");

        var lrValue = s.LearningRate ?? (s.Size == "tiny" ? 2e-3 : 3e-4);
        if (s.Only is { } variant)
        {
            // Child: one run in a fresh process, so its peak memory is its own (no cached blocks of another run).
            var batches = MakeBatches(tokens, s.Steps, batch, seq, s.Seed);
            var result = LossComparisonRun.Train(variant, cfg, BaseDir(s), s with { LearningRate = lrValue }, batches, device, dtype);
            File.WriteAllText(Path.Combine(s.Output, $"run-{variant}.json"), System.Text.Json.JsonSerializer.Serialize(result));
            return 0;
        }
        // One random base checkpoint (bnb-4bit, Hugging Face layout) that every child process loads.
        if (!File.Exists(Path.Combine(BaseDir(s), "config.json")))
            CheckpointWriter.WriteRandom(BaseDir(s), cfg.ToConfig(), (long)s.Seed, bnb4bit: true);
        var variants = Variants.Where(v => s.Chunked || v != "chunked").ToList();
        var results = new List<RunResult>();
        foreach (var v in variants)
        {
            var code = RunChild(v);
            var file = Path.Combine(s.Output, $"run-{v}.json");
            if (code != 0 || !File.Exists(file)) throw new IOException($"the {v} run failed (exit code {code})");
            results.Add(System.Text.Json.JsonSerializer.Deserialize<RunResult>(File.ReadAllText(file))!);
        }
        return Report.Write(s with { LearningRate = lrValue }, cfg, deviceName, dtype, batch, seq, results, onGpu);
    }

    private static string BaseDir(DemoSettings s) =>
        Path.Combine(s.Output, $"compare-base-{s.Size}-{s.Layers ?? 0}-{s.Seed}");

    /// <summary>Runs this same command for one variant in a child process (same arguments plus --only), so each
    /// variant's peak memory is its own.</summary>
    private static int RunChild(string variant) =>
        SlothSharp.Diagnostics.ChildProcess.RunSelf([.. SlothSharp.Diagnostics.ChildProcess.OwnArguments, "--only", variant]).ExitCode;

    private static List<(Tensor Ids, Tensor Labels)> MakeBatches(int[] tokens, int steps, int batch, int seq, ulong seed)
    {
        if (tokens.Length < seq + 2) throw new ArgumentException($"the corpus ({tokens.Length} tokens) is shorter than --seq {seq}");
        var rng = new Random((int)seed);
        var list = new List<(Tensor, Tensor)>();
        for (var step = 0; step < steps; step++)
        {
            var ids = new long[batch * seq];
            var labels = new long[batch * seq];
            for (var b = 0; b < batch; b++)
            {
                var start = rng.Next(tokens.Length - seq - 1);
                for (var t = 0; t < seq; t++)
                {
                    ids[b * seq + t] = tokens[start + t];
                    labels[b * seq + t] = tokens[start + t + 1];
                }
            }
            list.Add((tensor(ids).reshape(batch, seq), tensor(labels).reshape(batch, seq)));
        }
        return list;
    }
}
