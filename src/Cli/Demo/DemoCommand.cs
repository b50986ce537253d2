using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Tokenizers;
using SlothSharp.Models;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli.Demo;

/// <summary>Settings of one demo run.</summary>
internal sealed record DemoSettings(string Device, int Steps, string Output, string Size, int? Layers, int? Batch, int? Seq,
                                    bool Chunked, ulong Seed, double? LearningRate, string? Only);

/// <summary>`sloth demo`: trains the same QLoRA Llama twice (three times with --chunked) from the same seed on the same
/// tokens, once with the naive loss (full logits, float32 upcast) and once with FusedLinearCrossEntropy, and compares.</summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cpu or cuda", DefaultValueFactory = _ => "cpu" };
        var steps = new Option<int>("--steps") { Description = "training steps per run", DefaultValueFactory = _ => 60 };
        var output = new Option<string>("--out") { Description = "output folder (CSV, PNG, summary)", DefaultValueFactory = _ => "demo-output" };
        var size = new Option<string>("--size") { Description = "tiny (CPU default) or 1b (Llama-3.2-1B-like widths; CUDA default)" };
        var layers = new Option<int?>("--layers") { Description = "decoder layers (default: 2 tiny, 4 for 1b)" };
        var batch = new Option<int?>("--batch") { Description = "sequences per step" };
        var seq = new Option<int?>("--seq") { Description = "tokens per sequence" };
        var chunked = new Option<bool>("--chunked") { Description = "also train with the generic chunked loss", DefaultValueFactory = _ => true };
        var seed = new Option<ulong>("--seed") { Description = "seed of the model and the batches", DefaultValueFactory = _ => 7 };
        var lr = new Option<double?>("--lr") { Description = "AdamW learning rate of the adapters (default: 2e-3 tiny, 3e-4 1b)" };
        var only = new Option<string?>("--only") { Description = "run one variant (naive, fused, chunked) in this process and write run-VARIANT.json", Hidden = true };
        var cmd = new Command("demo", "QLoRA fine-tuning of a small Llama: naive loss vs fused linear cross-entropy, side by side")
            { device, steps, output, size, layers, batch, seq, chunked, seed, lr, only };
        cmd.SetAction(r =>
        {
            var dev = r.GetValue(device)!;
            var s = new DemoSettings(dev, r.GetValue(steps), r.GetValue(output)!, r.GetValue(size) ?? (dev == "cpu" ? "tiny" : "1b"),
                r.GetValue(layers), r.GetValue(batch), r.GetValue(seq), r.GetValue(chunked), r.GetValue(seed), r.GetValue(lr), r.GetValue(only));
            try
            {
                return Run(s);
            }
            catch (Exception e) when (e is ArgumentException or IOException)
            {
                AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
                return 1;
            }
        });
        return cmd;
    }

    private static int Run(DemoSettings s)
    {
        if (s.Steps < 1) throw new ArgumentException("--steps must be >= 1");
        var device = CheckpointCommands.ParseDevice(s.Device);
        var onGpu = device.type == TorchSharp.DeviceType.CUDA;
        var dtype = onGpu ? ScalarType.BFloat16 : ScalarType.Float32;
        Directory.CreateDirectory(s.Output);

        var tokenizer = TiktokenTokenizer.CreateForModel("gpt-4");  // cl100k_base, from the data package
        var tokens = tokenizer.EncodeToIds(Corpus.Generate(20_000)).ToArray();
        var vocab = tokens.Max() + 1 > 100_277 ? tokens.Max() + 1 : 100_277;  // cl100k: 100,256 merges + specials
        QLoraLlamaConfig cfg = s.Size switch
        {
            "tiny" => new QLoraLlamaConfig(vocab, Hidden: 64, Layers: s.Layers ?? 2, Heads: 4, KvHeads: 2, Intermediate: 176),
            "1b" => new QLoraLlamaConfig(vocab, Hidden: 2048, Layers: s.Layers ?? 4, Heads: 16, KvHeads: 8, Intermediate: 8192, LoraRank: 16, LoraAlpha: 32),
            _ => throw new ArgumentException($"unknown --size '{s.Size}' (tiny, 1b)"),
        };
        var (batch, seq) = (s.Batch ?? (s.Size == "tiny" ? 4 : 8), s.Seq ?? (s.Size == "tiny" ? 64 : 1024));
        var deviceName = onGpu ? $"{CudaDevice.Name(device.index < 0 ? 0 : device.index)}" : $"CPU ({Environment.ProcessorCount} cores)";
        AnsiConsole.MarkupLine($"[bold]SlothSharp demo[/]: QLoRA Llama, {cfg.Layers} layers, hidden {cfg.Hidden}, {cfg.Heads} heads / {cfg.KvHeads} KV, " +
                               $"MLP {cfg.Intermediate}, vocab {cfg.Vocab:N0} (cl100k BPE), LoRA r={cfg.LoraRank}; {batch}×{seq} tokens/step, {s.Steps} steps, {dtype} on {Markup.Escape(deviceName)}");
        AnsiConsole.MarkupLine($"corpus: {tokens.Length:N0} tokens from the built-in generator");

        var lrValue = s.LearningRate ?? (s.Size == "tiny" ? 2e-3 : 3e-4);
        if (s.Only is { } variant)
        {
            // Child: one run in a fresh process, so its peak memory is its own (no cached blocks of another run).
            var batches = MakeBatches(tokens, s.Steps, batch, seq, s.Seed);
            var result = Trainer.Train(variant, cfg, s with { LearningRate = lrValue }, batches, device, dtype, seq);
            File.WriteAllText(Path.Combine(s.Output, $"run-{variant}.json"), System.Text.Json.JsonSerializer.Serialize(result));
            return 0;
        }
        var variants = new List<string> { "naive", "fused" };
        if (s.Chunked) variants.Add("chunked");
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

    /// <summary>Runs this same command for one variant in a child process (same arguments plus --only).</summary>
    private static int RunChild(string variant)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        var argv = Environment.GetCommandLineArgs();
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet") psi.ArgumentList.Add(argv[0]);
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--only");
        psi.ArgumentList.Add(variant);
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.WaitForExit();
        return p.ExitCode;
    }

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
