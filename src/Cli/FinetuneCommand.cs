using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using SlothSharp.Distributed;
using SlothSharp.Data;
using SlothSharp.Models;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>--eval-data FILE and --eval-every N (null: after the last step only).</summary>
internal sealed record EvalSettings(string Path, int? Every);

/// <summary>Held-out rows and when to evaluate them; <see cref="Losses"/> collects step → eval loss.</summary>
internal sealed record EvalPlan(TrainingData Data, int? Every, int BatchSize, bool ChunkedLoss)
{
    public SortedDictionary<int, double> Losses { get; } = [];
}

/// <summary>`sloth finetune`: QLoRA fine-tuning of a Hugging Face Llama directory on a text file, writing a PEFT adapter.</summary>
public static class FinetuneCommand
{
    public static Command Create()
    {
        var d = new TrainerOptions();  // the library's defaults are the CLI's
        var model = new Option<string>("--model") { Description = "Hugging Face model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var data = CliOptions.InputFileOption("--data", DatasetInput.DataDescription, required: true);
        var format = DatasetInput.FormatOption();
        var chatTemplate = DatasetInput.ChatTemplateOption();
        var trainOn = DatasetInput.TrainOnOption();
        var evalData = CliOptions.InputFileOption("--eval-data", "held-out data in the same layout as --data: its loss (the same rows and labels, no training) goes into the progress line, losses.csv (eval_loss) and summary.md");
        var evalEvery = CliOptions.OptionalPositiveInt("--eval-every", "with --eval-data: evaluate every N steps (default: only after the last step)");
        var output = new Option<string>("--out") { Description = "output directory: the PEFT adapter, checkpoints/, losses.csv, loss.png, summary.md", Required = true };
        var rank = CliOptions.PositiveInt("--rank", "LoRA rank r", d.Lora.Rank);
        var alpha = CliOptions.PositiveDouble("--alpha", "LoRA alpha (scale alpha/r)", d.Lora.Alpha);
        var dropout = CliOptions.DoubleInRange("--dropout", "LoRA dropout", d.Lora.Dropout, 0, 1, maxExclusive: true);
        var targets = CliOptions.CheckedBy(new Option<string>("--targets")
            { Description = "all-linear or a comma list of the model's projections (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; Phi-3: qkv_proj,o_proj,gate_up_proj,down_proj)", DefaultValueFactory = _ => "all-linear" }, ParseTargets);
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
        var recompute = new Option<bool>("--recompute") { Description = "recompute attention and the norm outputs in backward instead of keeping them (less memory, a few % slower; same losses)" };
        var recomputeNorms = new Option<bool>("--recompute-norms") { Description = "recompute only the norm outputs in backward (the cheaper half of --recompute; same losses)" };
        var saveEvery = CliOptions.IntAtLeast("--save-every", "write a training checkpoint every N steps (0: only at the end / on Ctrl-C)", 100, 0);
        var resume = new Option<string?>("--resume") { Description = "continue from a checkpoint (a step-N directory, checkpoints/ or a previous --out)" };
        var device = CliOptions.Device(defaultValue: "auto", allowAuto: true);
        var dtype = CliOptions.Dtype(description: "compute dtype: bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on the CPU)", defaultValue: null);
        var seed = new Option<long>("--seed") { Description = "seeds adapters, data order and dropout", DefaultValueFactory = _ => d.Seed };
        var chunked = new Option<bool>("--chunked-loss") { Description = "use the generic chunked LM-head loss instead of the fused kernel" };
        var gpus = CliOptions.OptionalPositiveInt("--gpus", "train on N GPUs of this machine: one worker process per GPU over NCCL, the batch split by rank (rank 0 writes the outputs)");
        var shardBase = CliOptions.OneOf("--shard-base", "with --gpus: split the NF4 base weights over the GPUs (FSDP-style; auto: when N > 1)", "auto", "auto", "on", "off");
        var shardOptimizer = CliOptions.OneOf("--shard-optimizer", "split AdamW's state over the GPUs (ZeRO-2 style: gradients reduce-scattered, each GPU updates 1/N of the adapters; auto: when --gpus N > 1)", "auto", "auto", "on", "off");
        var offloadOptimizer = new Option<bool>("--offload-optimizer") { Description = "keep the (sharded) AdamW moments in host memory and update them on the CPU (implies the sharded optimizer; also without --gpus)" };
        var prefetch = new Option<bool>("--prefetch") { Description = "with --gpus and the NF4 base sharded: all-gather the next layer on a side CUDA stream while the current one computes" };
        var cmd = new Command("finetune", "QLoRA fine-tuning of a Hugging Face model on text or chat data; writes a PEFT LoRA adapter")
        {
            model, data, format, chatTemplate, trainOn, evalData, evalEvery, output, rank, alpha, dropout, targets, rslora, lr, steps, epochs, batch, seq, accum, packing, warmup, schedule,
            clip, checkpointing, recompute, recomputeNorms, nondeterministic, saveEvery, resume, device, dtype, seed, chunked, gpus, shardBase,
            shardOptimizer, offloadOptimizer, prefetch,
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
                RecomputeActivations = r.GetValue(recompute),
                RecomputeNorms = r.GetValue(recomputeNorms),
                Deterministic = !r.GetValue(nondeterministic),
                ChunkedLoss = r.GetValue(chunked),
                Seed = r.GetValue(seed),
                OutputDirectory = r.GetValue(output),
                SaveEvery = r.GetValue(saveEvery),
                ShardOptimizer = ShardOptimizerSetting(r.GetValue(shardOptimizer)!, r.GetValue(offloadOptimizer)),
                OffloadOptimizerState = r.GetValue(offloadOptimizer),
            };
            var worker = DistributedEnvironment.Read();
            if (r.GetValue(evalData) is null && r.GetValue(evalEvery) is not null)
                throw new CliException("--eval-every", "sets how often --eval-data is evaluated; add --eval-data FILE");
            if (r.GetValue(evalData) is not null && (r.GetValue(gpus) is not null || worker is not null))
                throw new CliException("--eval-data", "is not supported with --gpus yet (evaluate the adapter afterwards with sloth eval)");
            if (r.GetValue(prefetch)) CheckPrefetch(r.GetValue(gpus) ?? worker?.WorldSize, r.GetValue(shardBase)!);
            if (worker is null && r.GetValue(gpus) is { } n)
                return Launch(n, r.GetValue(device)!, r.GetValue(model)!, WorkerArguments(r.Tokens.Select(t => t.Value)));
            return Run(r.GetValue(model)!, r.GetValue(data)!, options, r.GetValue(resume), CliOptions.ToDevice(r.GetValue(device)!),
                       CliOptions.ToComputeDtype(r.GetValue(dtype)), worker, r.GetValue(shardBase)!, r.GetValue(prefetch),
                       new DataSelection(r.GetValue(format)!, r.GetValue(chatTemplate), r.GetValue(trainOn)),
                       r.GetValue(evalData) is { } evalPath ? new EvalSettings(evalPath, r.GetValue(evalEvery)) : null);
        });
        return cmd;
    }

    /// <summary>The command after parsing: <paramref name="dtype"/> null is the model's default.</summary>
    internal static int Run(string modelDir, string dataPath, TrainerOptions options, string? resumeDir, Device device, ScalarType? dtype,
                            DistributedEnvironment? worker = null, string shardBase = "auto", bool prefetch = false,
                            DataSelection? selection = null, EvalSettings? eval = null)
    {
        selection ??= new DataSelection();
        ModelCommandSupport.RequireModelDirectory(modelDir);
        if (worker is not null) device = new Device(DeviceType.CUDA, worker.Device);
        // Rank 0 (or the only process) talks; the other workers only report errors.
        var talk = worker is null || worker.Rank == 0;
        var console = talk ? FinetuneProgress.Stderr : AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null) });
        string? checkpoint = null;
        if (resumeDir is not null)
        {
            // A resumed run continues with the settings it was trained with (only where to write may change).
            checkpoint = TrainingCheckpoint.Resolve(resumeDir);
            options = TrainingCheckpoint.ReadOptions(checkpoint) with
            {
                OutputDirectory = options.OutputDirectory, SaveEvery = options.SaveEvery,
                // How the optimizer is laid out is not part of the run: its checkpoint file is the same either way.
                ShardOptimizer = options.ShardOptimizer, OffloadOptimizerState = options.OffloadOptimizerState,
            };
            console.MarkupLine($"resuming from [bold]{Markup.Escape(checkpoint)}[/] with its training options");
        }
        // Before the model's first GEMM, so cuBLAS reads its setting.
        if (options.Deterministic && !Determinism.Enable(out var problem)) console.MarkupLine($"[yellow]warning:[/] {Markup.Escape(problem!)}");

        var modelConfig = ModelConfig.Load(Path.Combine(modelDir, "config.json"));
        try
        {
            options.Lora.ResolveTargets(modelConfig);
        }
        catch (ArgumentException e)
        {
            throw new CliException("--targets", e.Message);
        }
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var (data, dataText) = DatasetInput.LoadTraining(modelDir, dataPath, selection, tokenizer, options.SequenceLength, options.Packing);
        console.MarkupLine($"data: {Markup.Escape(dataText)} → {data.Rows.Count:N0} rows, {data.Tokens:N0} tokens ({Markup.Escape(dataPath)})");
        EvalPlan? evalPlan = null;
        if (eval is not null)
        {
            var (evalData, evalText) = DatasetInput.LoadTraining(modelDir, eval.Path, selection, tokenizer, options.SequenceLength, options.Packing);
            evalPlan = new EvalPlan(evalData, eval.Every, options.BatchSize, options.ChunkedLoss);
            console.MarkupLine($"eval data: {Markup.Escape(evalText)} → {evalData.Rows.Count:N0} rows ({Markup.Escape(eval.Path)}), evaluated {(eval.Every is { } n ? $"every {n} steps" : "after the last step")}");
        }
        options = options with { BaseModelNameOrPath = options.BaseModelNameOrPath ?? Path.GetFullPath(modelDir) };
        var load = new LoadOptions { Device = device, ComputeDtype = dtype };
        TrainResult result;
        string deviceText;
        if (worker is null)
        {
            using var model = CausalLM.FromPretrained(modelDir, load);
            deviceText = $"{device} ({model.ComputeDtype}){OptimizerText(options, 1)}";
            result = Train(model, data, options, checkpoint, "finetune", evalPlan: evalPlan);
        }
        else
        {
            // Joins the launcher's NCCL group (blocks until every worker has joined).
            using var comm = worker.CreateCommunicator();
            var shard = shardBase == "on" || (shardBase == "auto" && worker.WorldSize > 1);
            // Sharded: each rank loads only its blocks of every NF4 decoder weight.
            // A sharded model refuses kernel changes: it is given the recomputation options before it shards.
            using var sharded = shard
                ? ShardedCausalLM.LoadPretrained(modelDir, load, comm, m => Trainer.ApplyRecomputation(m, options))
                : null;
            using var replicated = shard ? null : CausalLM.FromPretrained(modelDir, load);
            if (sharded is not null && prefetch) sharded.Prefetch = true;
            var model = sharded?.Model ?? replicated!;
            // The trainer adds the adapters (same seed on every rank, then broadcast from rank 0).
            deviceText = $"{worker.WorldSize} × CUDA ({model.ComputeDtype}), NCCL, NF4 base {(shard ? "sharded" : "replicated")}{(shard && prefetch ? ", next layer prefetched" : "")}{OptimizerText(options, worker.WorldSize)}";
            if (sharded is not null)
                console.MarkupLine(string.Create(CultureInfo.InvariantCulture, $"NF4 base weights on this GPU: {sharded.ShardBytes / 1e9:F2} GB of {sharded.FullBytes / 1e9:F2} GB (1/{worker.WorldSize})"));
            result = Train(model, data, options, checkpoint, $"finetune ×{worker.WorldSize}", comm, showProgress: talk);
            comm.Barrier();
        }
        if (!talk) return result.Interrupted ? DistributedLauncher.Interrupted : 0;
        var outDir = options.OutputDirectory!;
        FinetuneReport.Write(outDir, result, options, [("model", Path.GetFullPath(modelDir)), ("data", $"{Path.GetFullPath(dataPath)} ({dataText}, {data.Rows.Count} rows)"),
            ("device", deviceText), .. (eval is null ? [] : new[] { ("eval data", Path.GetFullPath(eval.Path)) })],
            evalLosses: evalPlan?.Losses);
        if (result.Interrupted)
        {
            Console.WriteLine($"interrupted at step {result.Steps}/{result.TotalSteps}; checkpoint: {result.LastCheckpoint}");
            Console.WriteLine($"continue with: sloth finetune --model {modelDir} --data {dataPath}{DataArguments(selection)} --out {outDir} --resume {result.LastCheckpoint}");
            return 130;
        }
        Console.WriteLine($"adapter: {Path.GetFullPath(outDir)} (adapter_config.json + adapter_model.safetensors)");
        Console.WriteLine($"final loss {result.Losses[^1].ToString("F4", CultureInfo.InvariantCulture)} after {result.Steps} steps; losses.csv, loss.png, summary.md there");
        return 0;
    }

    /// <summary>The data options to repeat on a resume (the checkpoint's fingerprint checks the rows are the same).</summary>
    private static string DataArguments(DataSelection s) =>
        (s.Format == "auto" ? "" : $" --format {s.Format}") + (s.ChatTemplate is null ? "" : $" --chat-template {s.ChatTemplate}")
        + (s.TrainOn is null ? "" : $" --train-on {s.TrainOn}");

    /// <summary>Creates the trainer (resuming when asked) and runs it under the live progress bar.</summary>
    internal static TrainResult Train(CausalLM model, TrainingData data, TrainerOptions options, string? checkpoint, string label,
                                      ICommunicator? communicator = null, bool showProgress = true, EvalPlan? evalPlan = null)
    {
        using var trainer = new Trainer(model, data, options, communicator);
        if (checkpoint is not null) trainer.ResumeFrom(checkpoint);
        Func<int, double?>? evaluate = evalPlan is null ? null : step =>
        {
            if (!(evalPlan.Every is { } n ? step % n == 0 || step == trainer.TotalSteps : step == trainer.TotalSteps)) return null;
            var loss = HeldOutLoss.Compute(model, evalPlan.Data, evalPlan.BatchSize, evalPlan.ChunkedLoss);
            evalPlan.Losses[step] = loss;
            return loss;
        };
        return FinetuneProgress.Run(trainer, label, showProgress, evaluate);
    }

    /// <summary>--prefetch needs --gpus and a sharded base (nothing is gathered otherwise).</summary>
    internal static void CheckPrefetch(int? gpus, string shardBase)
    {
        if (gpus is null)
            throw new CliException("--prefetch", "prefetches the sharded NF4 base of a --gpus N run; add --gpus N");
        if (shardBase == "off" || (shardBase == "auto" && gpus == 1))
            throw new CliException("--prefetch", $"prefetches the sharded NF4 base, but the base is replicated here (--shard-base {shardBase}{(shardBase == "auto" ? " with --gpus 1" : "")}); use --shard-base on");
    }

    private static string OptimizerText(TrainerOptions o, int ranks) =>
        (o.ShardOptimizer ?? (o.OffloadOptimizerState || ranks > 1))
            ? $", AdamW state sharded 1/{ranks}{(o.OffloadOptimizerState ? " in host memory" : "")}"
            : "";

    /// <summary>--shard-optimizer as <see cref="TrainerOptions.ShardOptimizer"/>: auto → null (on with more than one
    /// rank); --offload-optimizer needs the sharded optimizer, so "off" with it is a usage error.</summary>
    internal static bool? ShardOptimizerSetting(string value, bool offload) => value switch
    {
        "on" => true,
        "off" when offload => throw new CliException("--offload-optimizer", "offloads the sharded optimizer's state; --shard-optimizer off cannot be combined with it"),
        "off" => false,
        _ => null,
    };

    /// <summary>The arguments a worker gets: the user's, without <c>--gpus N</c> (workers are told their rank and
    /// world size through <see cref="DistributedEnvironment"/>).</summary>
    internal static List<string> WorkerArguments(IEnumerable<string> tokens)
    {
        var list = new List<string>();
        var skipNext = false;
        foreach (var t in tokens)
        {
            if (skipNext)
            {
                skipNext = false;
                continue;
            }
            if (t == "--gpus")
            {
                skipNext = true;
                continue;
            }
            if (t.StartsWith("--gpus=", StringComparison.Ordinal) || t.StartsWith("--gpus:", StringComparison.Ordinal)) continue;
            list.Add(t);
        }
        return list;
    }

    /// <summary>Checks a --gpus request against the machine: a CUDA device (auto or cuda, no index: the workers use
    /// GPUs 0..N−1), enough visible GPUs, NCCL. Throws <see cref="CliException"/> on --gpus.</summary>
    internal static void ValidateGpus(int gpus, string device, int cudaDevices, string? ncclProblem)
    {
        if (device is not ("auto" or "cuda"))
            throw new CliException("--gpus", $"runs one worker per CUDA GPU (GPUs 0..{gpus - 1}); --device {device} cannot be combined with it (leave --device out or use --device cuda)");
        if (cudaDevices == 0)
            throw new CliException("--gpus", $"{gpus} GPU{(gpus == 1 ? "" : "s")} asked for, but no CUDA GPU is visible (CUDA unavailable or no device)");
        if (gpus > cudaDevices)
            throw new CliException("--gpus", $"{gpus} GPUs asked for, but this machine has {cudaDevices} visible CUDA GPU{(cudaDevices == 1 ? "" : "s")}");
        if (ncclProblem is not null)
            throw new CliException("--gpus", $"NCCL is not available: {ncclProblem}");
    }

    /// <summary>The launcher side of --gpus N: checks the machine, makes the NCCL id, starts the workers (this same
    /// executable, with the same arguments minus --gpus) and forwards Ctrl-C / SIGTERM to them.</summary>
    private static int Launch(int gpus, string device, string modelDir, List<string> workerArguments)
    {
        var count = cuda.is_available() ? cuda.device_count() : 0;
        string? ncclProblem = null;
        byte[] id = [];
        if (count >= gpus && device is "auto" or "cuda")
        {
            try
            {
                if (!NcclCommunicator.IsAvailable) ncclProblem = "libnccl.so.2 (NCCL >= 2.10) could not be loaded by libslothsharp";
                else id = NcclCommunicator.NewUniqueId();
            }
            catch (Exception e) when (e is Interop.SlothException or DllNotFoundException or EntryPointNotFoundException)
            {
                ncclProblem = e.Message;
            }
        }
        ValidateGpus(gpus, device, count, ncclProblem);
        // Bad input is reported once, here, rather than by every worker.
        ModelCommandSupport.RequireModelDirectory(modelDir);

        var (exe, prefix) = SelfCommand();
        using var cts = new CancellationTokenSource();
        using var sigint = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        void Stop(PosixSignalContext ctx)
        {
            ctx.Cancel = true;  // keep the launcher alive: it waits for the workers' checkpoint
            cts.Cancel();
        }
        FinetuneProgress.Stderr.MarkupLine($"starting {gpus} worker{(gpus == 1 ? "" : "s")} (one per GPU, NCCL {NcclCommunicator.Version})");
        var code = DistributedLauncher.Run(exe, [.. prefix, .. workerArguments], gpus, id, Console.Error, Console.Error, cts.Token,
                                           LauncherOptions.Default with { InheritRank0Output = true });
        if (code is 0 or DistributedLauncher.Interrupted) return code;
        Console.Error.WriteLine($"error: --gpus: the distributed job failed (exit code {code}); see the worker messages above");
        return code;
    }

    /// <summary>How to start this program again: its apphost, or `dotnet sloth.dll` when run through dotnet.</summary>
    private static (string Executable, string[] Prefix) SelfCommand()
    {
        var process = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell this process's executable to start the workers");
        var name = Path.GetFileNameWithoutExtension(process);
        return name.Equals("dotnet", StringComparison.OrdinalIgnoreCase)
            ? (process, [typeof(FinetuneCommand).Assembly.Location])
            : (process, []);
    }

    /// <summary>--targets: all-linear, or a comma list of projection names (duplicates dropped; checked against the
    /// model's family once its config.json is read).</summary>
    internal static IReadOnlyList<string> ParseTargets(string text)
    {
        var list = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (list is ["all-linear"]) return ["all-linear"];
        if (list.Length == 0) throw new CliException("--targets", "empty (all-linear or a comma list of projections)");
        foreach (var t in list)
            if (t == "all-linear" || t.Any(c => !(char.IsAsciiLetterOrDigit(c) || c == '_')))
                throw new CliException("--targets", $"'{t}' is not a module name (all-linear alone, or a comma list of projections)");
        return list.Distinct().ToList();
    }
}
