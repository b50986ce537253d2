using System.CommandLine;
using System.Globalization;
using SlothSharp.Data;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>`sloth finetune`: QLoRA fine-tuning of a Hugging Face Llama directory on a text file, writing a PEFT adapter.</summary>
public static class FinetuneCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var data = new Option<string>("--data") { Description = ".jsonl ({\"text\": …} per line) or .txt (one document per non-empty line)", Required = true };
        var output = new Option<string>("--out") { Description = "output directory: the PEFT adapter, checkpoints/, losses.csv, loss.png, summary.md", Required = true };
        var rank = new Option<int>("--rank") { Description = "LoRA rank r", DefaultValueFactory = _ => 16 };
        var alpha = new Option<double>("--alpha") { Description = "LoRA alpha (scale alpha/r)", DefaultValueFactory = _ => 32 };
        var dropout = new Option<double>("--dropout") { Description = "LoRA dropout", DefaultValueFactory = _ => 0 };
        var targets = new Option<string>("--targets") { Description = "all-linear or a comma list (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)", DefaultValueFactory = _ => "all-linear" };
        var rslora = new Option<bool>("--rslora") { Description = "rank-stabilized LoRA: scale alpha/sqrt(r)" };
        var lr = new Option<double>("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => 2e-4 };
        var steps = new Option<int?>("--steps") { Description = "optimizer steps (default: from --epochs)" };
        var epochs = new Option<double>("--epochs") { Description = "passes over the data when --steps is not given", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch") { Description = "rows per micro-batch", DefaultValueFactory = _ => 4 };
        var seq = new Option<int>("--seq") { Description = "tokens per row; longer documents are split into windows", DefaultValueFactory = _ => 512 };
        var accum = new Option<int>("--grad-accum") { Description = "micro-batches per optimizer step", DefaultValueFactory = _ => 1 };
        var packing = new Option<bool>("--packing") { Description = "pack documents into full rows (EOS between them) instead of padding" };
        var warmup = new Option<int>("--warmup") { Description = "linear warmup steps", DefaultValueFactory = _ => 0 };
        var schedule = new Option<string>("--schedule") { Description = "cosine, linear or constant", DefaultValueFactory = _ => "cosine" };
        var clip = new Option<double>("--grad-clip") { Description = "clip the gradients' global norm (0: off)", DefaultValueFactory = _ => 1.0 };
        var checkpointing = new Option<bool>("--checkpointing") { Description = "gradient checkpointing: recompute decoder layers in backward" };
        var saveEvery = new Option<int>("--save-every") { Description = "write a training checkpoint every N steps (0: only at the end / on Ctrl-C)", DefaultValueFactory = _ => 100 };
        var resume = new Option<string?>("--resume") { Description = "continue from a checkpoint (a step-N directory, checkpoints/ or a previous --out)" };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or cuda:N", DefaultValueFactory = _ => "auto" };
        var dtype = new Option<string?>("--dtype") { Description = "compute dtype: bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on the CPU)" };
        var seed = new Option<long>("--seed") { Description = "seeds adapters, data order and dropout", DefaultValueFactory = _ => 42 };
        var chunked = new Option<bool>("--chunked-loss") { Description = "use the generic chunked LM-head loss instead of the fused kernel" };
        var cmd = new Command("finetune", "QLoRA fine-tuning of a Hugging Face Llama on a text file; writes a PEFT LoRA adapter")
        {
            model, data, output, rank, alpha, dropout, targets, rslora, lr, steps, epochs, batch, seq, accum, packing, warmup, schedule,
            clip, checkpointing, saveEvery, resume, device, dtype, seed, chunked,
        };
        cmd.SetAction(r => Guard(() =>
        {
            var options = new TrainerOptions
            {
                Lora = new LoraConfig(r.GetValue(rank), r.GetValue(alpha), r.GetValue(dropout), ParseTargets(r.GetValue(targets)!), r.GetValue(rslora)),
                MaxSteps = r.GetValue(steps),
                Epochs = r.GetValue(epochs),
                BatchSize = r.GetValue(batch),
                SequenceLength = r.GetValue(seq),
                GradientAccumulation = r.GetValue(accum),
                Packing = r.GetValue(packing),
                LearningRate = r.GetValue(lr),
                WarmupSteps = r.GetValue(warmup),
                Schedule = ParseSchedule(r.GetValue(schedule)!),
                MaxGradNorm = r.GetValue(clip),
                GradientCheckpointing = r.GetValue(checkpointing),
                ChunkedLoss = r.GetValue(chunked),
                Seed = r.GetValue(seed),
                OutputDirectory = r.GetValue(output),
                SaveEvery = r.GetValue(saveEvery),
            };
            return Run(r.GetValue(model)!, r.GetValue(data)!, options, r.GetValue(resume), r.GetValue(device)!, r.GetValue(dtype));
        }));
        return cmd;
    }

    internal static int Run(string modelDir, string dataPath, TrainerOptions options, string? resumeDir, string deviceText, string? dtypeText)
    {
        if (!File.Exists(Path.Combine(modelDir, "config.json"))) throw new FileNotFoundException($"--model {modelDir}: no config.json there (a Hugging Face model directory?)");
        if (!File.Exists(dataPath)) throw new FileNotFoundException($"--data {dataPath}: no such file");
        var (dev, dt) = ParseDevice(deviceText, dtypeText);
        string? checkpoint = null;
        if (resumeDir is not null)
        {
            // A resumed run continues with the settings it was trained with (only where to write may change).
            checkpoint = TrainingCheckpoint.Resolve(resumeDir);
            options = TrainingCheckpoint.ReadOptions(checkpoint) with { OutputDirectory = options.OutputDirectory, SaveEvery = options.SaveEvery };
            FinetuneProgress.Stderr.MarkupLine($"resuming from [bold]{Markup.Escape(checkpoint)}[/] with its training options");
        }

        var documents = TextDocuments.Read(dataPath);
        if (documents.Count == 0) throw new InvalidDataException($"--data {dataPath}: no documents (the file is empty)");
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var data = TrainingData.FromDocuments(tokenizer, documents, options.SequenceLength, options.Packing);
        FinetuneProgress.Stderr.MarkupLine($"data: {documents.Count:N0} documents → {data.Rows.Count:N0} rows, {data.Tokens:N0} tokens ({Markup.Escape(dataPath)})");
        using var model = LlamaForCausalLM.FromPretrained(modelDir, new LoadOptions { Device = dev, ComputeDtype = dt });
        var result = Train(model, data, options with { BaseModelNameOrPath = options.BaseModelNameOrPath ?? Path.GetFullPath(modelDir) }, checkpoint, "finetune");
        var outDir = options.OutputDirectory!;
        FinetuneReport.Write(outDir, result, options, [("model", Path.GetFullPath(modelDir)), ("data", $"{Path.GetFullPath(dataPath)} ({documents.Count} documents, {data.Rows.Count} rows)"),
            ("device", $"{dev} ({model.ComputeDtype})")]);
        if (result.Interrupted)
        {
            Console.WriteLine($"interrupted at step {result.Steps}/{result.TotalSteps}; checkpoint: {result.LastCheckpoint}");
            Console.WriteLine($"continue with: sloth finetune --model {modelDir} --data {dataPath} --out {outDir} --resume {result.LastCheckpoint}");
            return 130;
        }
        Console.WriteLine($"adapter: {Path.GetFullPath(outDir)} (adapter_config.json + adapter_model.safetensors)");
        Console.WriteLine($"final loss {result.Losses[^1].ToString("F4", CultureInfo.InvariantCulture)} after {result.Steps} steps; losses.csv, loss.png, summary.md there");
        return 0;
    }

    /// <summary>Creates the trainer (resuming when asked) and runs it under the live progress bar.</summary>
    internal static TrainResult Train(LlamaForCausalLM model, TrainingData data, TrainerOptions options, string? checkpoint, string label)
    {
        using var trainer = new Trainer(model, data, options);
        if (checkpoint is not null) trainer.ResumeFrom(checkpoint);
        return FinetuneProgress.Run(trainer, label);
    }

    internal static IReadOnlyList<string> ParseTargets(string text)
    {
        var known = new[] { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };
        var list = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (list is ["all-linear"]) return ["all-linear"];
        if (list.Length == 0) throw new ArgumentException("--targets: empty (all-linear or a comma list of projections)");
        foreach (var t in list)
            if (!known.Contains(t)) throw new ArgumentException($"--targets: unknown module '{t}' (all-linear or some of {string.Join(",", known)})");
        return list.Distinct().ToList();
    }

    internal static LearningRateSchedule ParseSchedule(string text) => text.ToLowerInvariant() switch
    {
        "cosine" => LearningRateSchedule.Cosine,
        "linear" => LearningRateSchedule.Linear,
        "constant" => LearningRateSchedule.Constant,
        _ => throw new ArgumentException($"--schedule: '{text}' is not cosine, linear or constant"),
    };

    /// <summary>--device auto|cpu|cuda[:N] and --dtype bf16|fp16|fp32 (default bf16 on CUDA, fp32 on the CPU).</summary>
    internal static (Device Device, ScalarType Dtype) ParseDevice(string deviceText, string? dtypeText)
    {
        var dev = deviceText == "auto"
            ? (cuda.is_available() && CudaDevice.IsAvailable ? CUDA : CPU)
            : CheckpointCommands.ParseDevice(deviceText);
        var onCuda = dev.type == DeviceType.CUDA;
        var dt = dtypeText?.ToLowerInvariant() switch
        {
            null => onCuda ? ScalarType.BFloat16 : ScalarType.Float32,
            "bf16" or "bfloat16" => ScalarType.BFloat16,
            "fp16" or "float16" => ScalarType.Float16,
            "fp32" or "float32" => ScalarType.Float32,
            _ => throw new ArgumentException($"--dtype: '{dtypeText}' is not bf16, fp16 or fp32"),
        };
        return (dev, dt);
    }

    /// <summary>Runs a command body; failures propagate to <see cref="SlothCli"/>, which prints one `error: …` line on
    /// stderr with the documented exit code.</summary>
    internal static int Guard(Func<int> body) => body();
}
