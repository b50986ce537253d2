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
        var d = new TrainerOptions();  // the library's defaults are the CLI's
        var model = new Option<string>("--model") { Description = "Hugging Face model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var data = CliOptions.InputFileOption("--data", ".jsonl ({\"text\": …} per line) or .txt (one document per non-empty line)", required: true);
        var output = new Option<string>("--out") { Description = "output directory: the PEFT adapter, checkpoints/, losses.csv, loss.png, summary.md", Required = true };
        var rank = CliOptions.PositiveInt("--rank", "LoRA rank r", d.Lora.Rank);
        var alpha = CliOptions.PositiveDouble("--alpha", "LoRA alpha (scale alpha/r)", d.Lora.Alpha);
        var dropout = CliOptions.DoubleInRange("--dropout", "LoRA dropout", d.Lora.Dropout, 0, 1, maxExclusive: true);
        var targets = CliOptions.CheckedBy(new Option<string>("--targets")
            { Description = $"all-linear or a comma list ({string.Join(",", LoraConfig.AllLinear)})", DefaultValueFactory = _ => "all-linear" }, ParseTargets);
        var rslora = new Option<bool>("--rslora") { Description = "rank-stabilized LoRA: scale alpha/sqrt(r)" };
        var lr = CliOptions.PositiveDouble("--lr", "peak learning rate (AdamW)", d.LearningRate);
        var steps = CliOptions.OptionalPositiveInt("--steps", "optimizer steps (default: from --epochs)");
        var epochs = CliOptions.PositiveDouble("--epochs", "passes over the data when --steps is not given", d.Epochs);
        var batch = CliOptions.PositiveInt("--batch", "rows per micro-batch", d.BatchSize);
        var seq = CliOptions.IntAtLeast("--seq", "tokens per row; longer documents are split into windows", d.SequenceLength, 2);
        var accum = CliOptions.PositiveInt("--grad-accum", "micro-batches per optimizer step", d.GradientAccumulation);
        var packing = new Option<bool>("--packing") { Description = "pack documents into full rows (EOS between them) instead of padding" };
        var warmup = CliOptions.IntAtLeast("--warmup", "linear warmup steps", d.WarmupSteps, 0);
        var schedule = CliOptions.OneOf("--schedule", "learning-rate schedule: cosine, linear or constant",
                                        d.Schedule.ToString().ToLowerInvariant(), CliOptions.LowerCaseNames<LearningRateSchedule>());
        var clip = CliOptions.NonNegativeDouble("--grad-clip", "clip the gradients' global norm (0: off)", d.MaxGradNorm ?? 0);
        var nondeterministic = new Option<bool>("--nondeterministic") { Description = "allow non-deterministic GPU kernels (faster; a resumed run then drifts from an uninterrupted one by rounding)" };
        var checkpointing = new Option<bool>("--checkpointing") { Description = "gradient checkpointing: recompute decoder layers in backward" };
        var saveEvery = CliOptions.IntAtLeast("--save-every", "write a training checkpoint every N steps (0: only at the end / on Ctrl-C)", 100, 0);
        var resume = new Option<string?>("--resume") { Description = "continue from a checkpoint (a step-N directory, checkpoints/ or a previous --out)" };
        var device = CliOptions.Device(defaultValue: "auto", allowAuto: true);
        var dtype = CliOptions.Dtype(description: "compute dtype: bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on the CPU)", defaultValue: null);
        var seed = new Option<long>("--seed") { Description = "seeds adapters, data order and dropout", DefaultValueFactory = _ => d.Seed };
        var chunked = new Option<bool>("--chunked-loss") { Description = "use the generic chunked LM-head loss instead of the fused kernel" };
        var cmd = new Command("finetune", "QLoRA fine-tuning of a Hugging Face Llama on a text file; writes a PEFT LoRA adapter")
        {
            model, data, output, rank, alpha, dropout, targets, rslora, lr, steps, epochs, batch, seq, accum, packing, warmup, schedule,
            clip, checkpointing, nondeterministic, saveEvery, resume, device, dtype, seed, chunked,
        };
        cmd.SetAction(r =>
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
                Schedule = Enum.Parse<LearningRateSchedule>(r.GetValue(schedule)!, ignoreCase: true),
                MaxGradNorm = r.GetValue(clip),
                GradientCheckpointing = r.GetValue(checkpointing),
                Deterministic = !r.GetValue(nondeterministic),
                ChunkedLoss = r.GetValue(chunked),
                Seed = r.GetValue(seed),
                OutputDirectory = r.GetValue(output),
                SaveEvery = r.GetValue(saveEvery),
            };
            return Run(r.GetValue(model)!, r.GetValue(data)!, options, r.GetValue(resume), CliOptions.ToDevice(r.GetValue(device)!),
                       CliOptions.ToComputeDtype(r.GetValue(dtype)));
        });
        return cmd;
    }

    /// <summary>The command after parsing: <paramref name="dtype"/> null is the model's default.</summary>
    internal static int Run(string modelDir, string dataPath, TrainerOptions options, string? resumeDir, Device device, ScalarType? dtype)
    {
        ModelCommandSupport.RequireModelDirectory(modelDir);
        string? checkpoint = null;
        if (resumeDir is not null)
        {
            // A resumed run continues with the settings it was trained with (only where to write may change).
            checkpoint = TrainingCheckpoint.Resolve(resumeDir);
            options = TrainingCheckpoint.ReadOptions(checkpoint) with { OutputDirectory = options.OutputDirectory, SaveEvery = options.SaveEvery };
            FinetuneProgress.Stderr.MarkupLine($"resuming from [bold]{Markup.Escape(checkpoint)}[/] with its training options");
        }
        // Before the model's first GEMM, so cuBLAS reads its setting.
        if (options.Deterministic && !Determinism.Enable(out var problem)) FinetuneProgress.Stderr.MarkupLine($"[yellow]warning:[/] {Markup.Escape(problem!)}");

        var documents = TextDocuments.Read(dataPath);
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var data = TrainingData.FromDocuments(tokenizer, documents, options.SequenceLength, options.Packing);
        FinetuneProgress.Stderr.MarkupLine($"data: {documents.Count:N0} documents → {data.Rows.Count:N0} rows, {data.Tokens:N0} tokens ({Markup.Escape(dataPath)})");
        using var model = LlamaForCausalLM.FromPretrained(modelDir, new LoadOptions { Device = device, ComputeDtype = dtype });
        var result = Train(model, data, options with { BaseModelNameOrPath = options.BaseModelNameOrPath ?? Path.GetFullPath(modelDir) }, checkpoint, "finetune");
        var outDir = options.OutputDirectory!;
        FinetuneReport.Write(outDir, result, options, [("model", Path.GetFullPath(modelDir)), ("data", $"{Path.GetFullPath(dataPath)} ({documents.Count} documents, {data.Rows.Count} rows)"),
            ("device", $"{device} ({model.ComputeDtype})")]);
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

    /// <summary>--targets: all-linear, or a comma list of the Llama projections (duplicates dropped).</summary>
    internal static IReadOnlyList<string> ParseTargets(string text)
    {
        var list = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (list is ["all-linear"]) return ["all-linear"];
        if (list.Length == 0) throw new CliException("--targets", "empty (all-linear or a comma list of projections)");
        foreach (var t in list)
            if (!LoraConfig.AllLinear.Contains(t))
                throw new CliException("--targets", $"unknown module '{t}' (all-linear or some of {string.Join(",", LoraConfig.AllLinear)})");
        return list.Distinct().ToList();
    }
}
