using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using SlothSharp.Data;
using SlothSharp.Evaluation;
using SlothSharp.Generation;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli.Demo;

/// <summary>
/// `sloth demo`: the whole fine-tuning workflow on an embedded default, offline. On the CPU it takes the repository's
/// tiny Hugging Face bnb-4bit checkpoint (tests/data/hf-tiny-llama/nf4: random weights written by transformers); on
/// CUDA it writes a random Llama-3.2-1B-shaped bnb-4bit checkpoint. It evaluates the base and generates from it on
/// Chapter I of "Alice's Adventures in Wonderland" (public domain), fine-tunes LoRA adapters on that text, evaluates
/// and generates again, and saves the PEFT adapter. The base has random weights, so "before" is noise and "after"
/// shows what the adapters alone learned from the text.
/// `sloth demo --compare-losses` runs the older naive-vs-fused loss comparison instead.
/// </summary>
internal static class DemoCommand
{
    private const string Prompt = "Alice was beginning to";

    public static Command Create()
    {
        var device = CliOptions.Device(description: "cpu, cuda or cuda:N");
        var steps = CliOptions.OptionalPositiveInt("--steps", "training steps (default: 100 on the CPU, 200 on CUDA; comparison: 60)");
        var output = new Option<string>("--out") { Description = "output folder", DefaultValueFactory = _ => "demo-output" };
        var compare = new Option<bool>("--compare-losses") { Description = "instead: train the same model with the naive and the fused loss and compare (exit code 3 if they differ)" };
        var size = CliOptions.OneOf("--size", "comparison model: tiny (CPU default) or 1b (Llama-3.2-1B-like widths; CUDA default)", null, CompareLosses.Sizes);
        var layers = CliOptions.OptionalPositiveInt("--layers", "comparison: decoder layers (default: 2 tiny, 4 for 1b)");
        var batch = CliOptions.OptionalPositiveInt("--batch", "rows per step");
        var seq = CliOptions.OptionalIntAtLeast("--seq", "tokens per row", 2);
        var chunked = new Option<bool>("--chunked") { Description = "comparison: also train with the generic chunked loss", DefaultValueFactory = _ => true };
        var seed = new Option<ulong>("--seed") { Description = "seed of the model, adapters and data order", DefaultValueFactory = _ => 7 };
        var lr = CliOptions.OptionalPositiveDouble("--lr", "peak AdamW learning rate of the adapters");
        var only = CliOptions.OneOf("--only", "comparison: run one variant (naive, fused, chunked) in this process", null, CompareLosses.Variants);
        only.Hidden = true;
        var cmd = new Command("demo", "Fine-tune a Llama with QLoRA on an embedded public-domain text: eval and generate before/after, save the PEFT adapter")
            { device, steps, output, compare, size, layers, batch, seq, chunked, seed, lr, only };
        cmd.SetAction(r =>
        {
            var dev = r.GetValue(device)!;
            if (r.GetValue(compare))
            {
                var s = new DemoSettings(dev, r.GetValue(steps) ?? 60, r.GetValue(output)!, r.GetValue(size) ?? (dev == "cpu" ? "tiny" : "1b"),
                    r.GetValue(layers), r.GetValue(batch), r.GetValue(seq), r.GetValue(chunked), r.GetValue(seed), r.GetValue(lr), r.GetValue(only));
                return CompareLosses.Run(s);
            }
            return Run(CliOptions.ToDevice(dev), r.GetValue(steps), r.GetValue(output)!, r.GetValue(batch), r.GetValue(seq), (long)r.GetValue(seed), r.GetValue(lr));
        });
        return cmd;
    }

    /// <summary>The CUDA demo's base: Llama-3.2-1B's shape (16 layers, hidden 2048, 32/8 heads, MLP 8192, vocab 128256,
    /// tied embeddings, llama3 RoPE scaling) with random weights, the tiny checkpoint's tokenizer (ids 0..419 only).</summary>
    internal static ModelConfig CudaBaseConfig() => ModelPresets.Llama32_1B with { BosTokenId = 0, EosTokenIds = [1], PadTokenId = 2 };

    private static int Run(Device device, int? stepsArg, string outDir, int? batchArg, int? seqArg, long seed, double? lrArg)
    {
        var total = Stopwatch.StartNew();
        var onCuda = device.type == TorchSharp.DeviceType.CUDA;
        var console = AnsiConsole.Console;
        var assets = Path.Combine(AppContext.BaseDirectory, "Assets");
        var textPath = Path.Combine(assets, "alice-chapter1.txt");
        Directory.CreateDirectory(outDir);

        // 1. The base: on the CPU the repository's tiny Hugging Face bnb-4bit checkpoint (2 layers, hidden 64, weights
        //    N(0, 0.08²): large enough logits that LoRA alone can fit the text, and fast); on CUDA a random
        //    Llama-3.2-1B-shaped bnb-4bit checkpoint, written once into the output folder and reused.
        var tinyDir = Path.Combine(assets, "hf-tiny-llama-nf4");
        var baseDir = onCuda ? Path.Combine(outDir, "base-llama-3.2-1b-shape") : tinyDir;
        if (onCuda && !File.Exists(Path.Combine(baseDir, "config.json")))
        {
            var clock = Stopwatch.StartNew();
            var cfg = CudaBaseConfig();
            CheckpointWriter.WriteRandom(baseDir, cfg, seed, bnb4bit: true, tinyDir);
            console.MarkupLine($"wrote a random {cfg.NumHiddenLayers}-layer Llama (hidden {cfg.HiddenSize}, vocab {cfg.VocabSize:N0}, bnb-4bit) to [bold]{Markup.Escape(baseDir)}[/] in {clock.Elapsed.TotalSeconds:F1} s");
        }
        var config = ModelConfig.Load(Path.Combine(baseDir, "config.json"));

        var docs = TextDocuments.Read(textPath);
        var tokenizer = HfTokenizer.FromDirectory(baseDir);
        var (batch, seq) = (batchArg ?? 8, seqArg ?? (onCuda ? 512 : 128));
        var options = new TrainerOptions
        {
            Lora = new LoraConfig(Rank: 16, Alpha: 32),
            MaxSteps = stepsArg ?? (onCuda ? 200 : 100),
            BatchSize = batch,
            SequenceLength = seq,
            Packing = true,
            LearningRate = lrArg ?? (onCuda ? 1e-3 : 1e-2),
            WarmupSteps = onCuda ? 10 : 5,
            Schedule = LearningRateSchedule.Cosine,
            MaxGradNorm = 1.0,
            Seed = seed,
            OutputDirectory = outDir,
            SaveEvery = 50,
            BaseModelNameOrPath = Path.GetFullPath(baseDir),
        };
        var data = TrainingData.FromDocuments(tokenizer, docs, seq, packing: true);
        var deviceName = onCuda ? CudaDevice.Name(Math.Max(0, (int)device.index)) : $"CPU ({Environment.ProcessorCount} cores)";
        using var model = CausalLM.FromPretrained(baseDir, new LoadOptions { Device = device });
        var dtype = model.ComputeDtype;  // the model's default: bf16 on CUDA, fp32 on the CPU
        console.MarkupLine($"[bold]SlothSharp demo[/]: QLoRA fine-tuning on {Markup.Escape(deviceName)} ({dtype}); text: Chapter I of \"Alice's Adventures in Wonderland\" " +
                           $"(public domain), {docs.Count} paragraphs → {data.Rows.Count} packed rows of {seq} tokens");

        var (lossBefore, textBefore) = Probe(model, tokenizer, docs, seq);
        var result = FinetuneCommand.Train(model, data, options, null, "demo");
        if (result.Interrupted)
        {
            console.MarkupLine($"[yellow]interrupted[/] at step {result.Steps}; checkpoint {Markup.Escape(result.LastCheckpoint ?? "")}");
            return 130;
        }
        var (lossAfter, textAfter) = Probe(model, tokenizer, docs, seq);

        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumns("", "before", "after");
        table.AddRow("eval loss (nats/token, the chapter)", lossBefore.ToString("F4", inv), lossAfter.ToString("F4", inv));
        table.AddRow($"greedy continuation of \"{Prompt}\"", Markup.Escape(Clip(textBefore)), Markup.Escape(Clip(textAfter)));
        console.Write(table);
        var md = new StringBuilder("## Before and after fine-tuning\n\n| | before | after |\n|---|---|---|\n");
        md.Append(inv, $"| eval loss (the chapter) | {lossBefore:F4} | {lossAfter:F4} |\n");
        md.Append(inv, $"| greedy continuation of \"{Prompt}\" | {MdCell(textBefore)} | {MdCell(textAfter)} |\n");
        FinetuneReport.Write(outDir, result, options,
            [("base model", $"{baseDir} ({(onCuda ? "random weights" : "tests/data/hf-tiny-llama, random weights written by transformers")}, {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, vocab {config.VocabSize:N0}, bnb-4bit NF4)"),
             ("data", $"Chapter I of Alice's Adventures in Wonderland (Lewis Carroll, 1865; public domain), {docs.Count} paragraphs, {data.Tokens:N0} tokens"),
             ("device", $"{deviceName}, {dtype}")], md.ToString());
        console.MarkupLine($"loss {result.Losses[0].ToString("F3", inv)} → {result.Losses[^1].ToString("F3", inv)} over {result.Steps} steps; " +
                           $"eval {lossBefore.ToString("F3", inv)} → {lossAfter.ToString("F3", inv)}");
        console.MarkupLine($"PEFT adapter: [bold]{Markup.Escape(Path.GetFullPath(outDir))}[/] (adapter_config.json, adapter_model.safetensors); " +
                           $"losses.csv, loss.png, summary.md, checkpoints/ there. Total {total.Elapsed.TotalSeconds:F0} s.");
        return 0;
    }

    /// <summary>Eval loss over the documents and a greedy continuation of the prompt.</summary>
    private static (double Loss, string Text) Probe(CausalLM model, HfTokenizer tokenizer, IReadOnlyList<string> docs, int seq)
    {
        model.eval();
        var eval = Evaluator.Evaluate(model, tokenizer, docs, batchSize: 8, maxLength: seq);
        var prompt = tokenizer.Encode(Prompt, addBos: tokenizer.BosTokenId is not null);
        var stop = tokenizer.EosTokenId is { } eos ? new[] { eos } : null;
        var ids = TextGenerator.Generate(model, prompt, new GenerationOptions(MaxNewTokens: 48, StopTokenIds: stop)).ToList();
        return (eval.Loss, Prompt + tokenizer.Decode(ids));
    }

    private static string Clip(string s) => (s.Length > 160 ? s[..160] + "…" : s).ReplaceLineEndings(" ");

    private static string MdCell(string s) => Clip(s).Replace("|", "\\|");
}
