using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SlothSharp.Models;

namespace SlothSharp.Training;

/// <summary>
/// A training checkpoint directory (<c>checkpoints/step-000123/</c>): the adapter in PEFT format
/// (adapter_config.json + adapter_model.safetensors), <c>optimizer.safetensors</c> (AdamW's exp_avg, exp_avg_sq and
/// step per adapter tensor, named after the PEFT key) and <c>trainer_state.json</c> (step, data position, losses,
/// learning rates, the options, the data fingerprint). Dropout masks are drawn from a generator re-seeded from
/// (seed, step) at every step, so the seed and the step are the whole random state.
/// </summary>
public static class TrainingCheckpoint
{
    public const string StateFile = "trainer_state.json";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string DirectoryPrefix = "step-";
    public const int FormatVersion = 1;

    /// <summary>A checkpoint directory, or the newest complete checkpoint under a directory of them (or under
    /// DIR/checkpoints). Throws when there is none.</summary>
    public static string Resolve(string dir)
    {
        if (File.Exists(Path.Combine(dir, StateFile))) return dir;
        foreach (var parent in new[] { dir, Path.Combine(dir, "checkpoints") })
        {
            if (!Directory.Exists(parent)) continue;
            var newest = Directory.GetDirectories(parent, DirectoryPrefix + "*")
                .Where(d => File.Exists(Path.Combine(d, StateFile)))
                .OrderByDescending(d => d, StringComparer.Ordinal).FirstOrDefault();
            if (newest is not null) return newest;
        }
        throw new FileNotFoundException($"{dir}: no training checkpoint here ({StateFile}, or {DirectoryPrefix}N directories holding one)");
    }

    /// <summary>The options a checkpoint was trained with (resume with these).</summary>
    public static TrainerOptions ReadOptions(string checkpointDir) => Read(checkpointDir).Options;

    internal sealed record State(int Step, int TotalSteps, long RowsConsumed, long Tokens, List<double> Losses, List<double> LearningRates,
                                 TrainerOptions Options, string DataFingerprint, int DataRows, string? ModelSource);

    internal static State Read(string checkpointDir)
    {
        var path = Path.Combine(checkpointDir, StateFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: missing (not a training checkpoint)", path);
        JsonObject o;
        try
        {
            o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException)
        {
            throw new InvalidDataException($"{path}: not a valid trainer state ({e.Message})", e);
        }
        T Get<T>(JsonObject obj, string field)
        {
            try
            {
                return obj[field] is JsonNode n ? n.GetValue<T>() : throw new InvalidDataException($"{path}: field '{field}' is missing");
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new InvalidDataException($"{path}: field '{field}' has the wrong type ({e.Message})", e);
            }
        }
        var version = Get<int>(o, "format_version");
        if (version != FormatVersion) throw new InvalidDataException($"{path}: field 'format_version' is {version}; this SlothSharp reads {FormatVersion}");
        var opt = o["options"] as JsonObject ?? throw new InvalidDataException($"{path}: field 'options' is missing");
        var lora = opt["lora"] as JsonObject ?? throw new InvalidDataException($"{path}: field 'options.lora' is missing");
        var options = new TrainerOptions
        {
            Lora = new LoraConfig(Get<int>(lora, "r"), Get<double>(lora, "lora_alpha"), Get<double>(lora, "lora_dropout"),
                (lora["target_modules"] as JsonArray ?? throw new InvalidDataException($"{path}: field 'options.lora.target_modules' is missing"))
                .Select(n => n!.GetValue<string>()).ToList(), Get<bool>(lora, "use_rslora")),
            MaxSteps = opt["max_steps"]?.GetValue<int>(),
            Epochs = Get<double>(opt, "epochs"),
            BatchSize = Get<int>(opt, "batch_size"),
            SequenceLength = Get<int>(opt, "sequence_length"),
            GradientAccumulation = Get<int>(opt, "gradient_accumulation"),
            Packing = Get<bool>(opt, "packing"),
            LearningRate = Get<double>(opt, "learning_rate"),
            WeightDecay = Get<double>(opt, "weight_decay"),
            Beta1 = Get<double>(opt, "beta1"),
            Beta2 = Get<double>(opt, "beta2"),
            Epsilon = Get<double>(opt, "epsilon"),
            WarmupSteps = Get<int>(opt, "warmup_steps"),
            Schedule = Enum.Parse<LearningRateSchedule>(Get<string>(opt, "schedule"), ignoreCase: true),
            MaxGradNorm = opt["max_grad_norm"]?.GetValue<double>(),
            GradientCheckpointing = Get<bool>(opt, "gradient_checkpointing"),
            RecomputeActivations = opt["recompute_activations"]?.GetValue<bool>() ?? false,  // absent before round 15
            RecomputeNorms = opt["recompute_norms"]?.GetValue<bool>() ?? false,              // absent before round 16
            ChunkedLoss = Get<bool>(opt, "chunked_loss"),
            LossChunkRows = opt["loss_chunk_rows"]?.GetValue<int>(),
            Seed = Get<long>(opt, "seed"),
            Shuffle = Get<bool>(opt, "shuffle"),
            OutputDirectory = opt["output_directory"]?.GetValue<string>(),
            SaveEvery = Get<int>(opt, "save_every"),
            KeepCheckpoints = Get<int>(opt, "keep_checkpoints"),
            BaseModelNameOrPath = opt["base_model_name_or_path"]?.GetValue<string>(),
        };
        return new State(Get<int>(o, "step"), Get<int>(o, "total_steps"), Get<long>(o, "rows_consumed"), Get<long>(o, "tokens"),
            (o["losses"] as JsonArray ?? []).Select(n => n!.GetValue<double>()).ToList(),
            (o["learning_rates"] as JsonArray ?? []).Select(n => n!.GetValue<double>()).ToList(),
            options, Get<string>(o, "data_fingerprint"), Get<int>(o, "data_rows"), o["model_source"]?.GetValue<string>());
    }

    internal static string Serialize(State s)
    {
        var o = s.Options;
        var root = new JsonObject
        {
            ["format_version"] = FormatVersion,
            ["step"] = s.Step,
            ["total_steps"] = s.TotalSteps,
            ["rows_consumed"] = s.RowsConsumed,
            ["tokens"] = s.Tokens,
            ["data_rows"] = s.DataRows,
            ["data_fingerprint"] = s.DataFingerprint,
            ["model_source"] = s.ModelSource,
            ["rng"] = "dropout generator re-seeded from (seed, step) at every step; data order: SplitMix64 permutation per epoch from (seed, epoch)",
            ["saved_utc"] = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
            ["options"] = new JsonObject
            {
                ["lora"] = new JsonObject
                {
                    ["r"] = o.Lora.Rank,
                    ["lora_alpha"] = o.Lora.Alpha,
                    ["lora_dropout"] = o.Lora.Dropout,
                    ["target_modules"] = new JsonArray(o.Lora.TargetNames.Select(t => (JsonNode)t).ToArray()),
                    ["use_rslora"] = o.Lora.UseRslora,
                },
                ["max_steps"] = o.MaxSteps,
                ["epochs"] = o.Epochs,
                ["batch_size"] = o.BatchSize,
                ["sequence_length"] = o.SequenceLength,
                ["gradient_accumulation"] = o.GradientAccumulation,
                ["packing"] = o.Packing,
                ["learning_rate"] = o.LearningRate,
                ["weight_decay"] = o.WeightDecay,
                ["beta1"] = o.Beta1,
                ["beta2"] = o.Beta2,
                ["epsilon"] = o.Epsilon,
                ["warmup_steps"] = o.WarmupSteps,
                ["schedule"] = o.Schedule.ToString().ToLowerInvariant(),
                ["max_grad_norm"] = o.MaxGradNorm,
                ["gradient_checkpointing"] = o.GradientCheckpointing,
                ["recompute_activations"] = o.RecomputeActivations,
                ["recompute_norms"] = o.RecomputeNorms,
                ["chunked_loss"] = o.ChunkedLoss,
                ["loss_chunk_rows"] = o.LossChunkRows,
                ["seed"] = o.Seed,
                ["shuffle"] = o.Shuffle,
                ["output_directory"] = o.OutputDirectory,
                ["save_every"] = o.SaveEvery,
                ["keep_checkpoints"] = o.KeepCheckpoints,
                ["base_model_name_or_path"] = o.BaseModelNameOrPath,
            },
            ["losses"] = new JsonArray(s.Losses.Select(l => (JsonNode)l).ToArray()),
            ["learning_rates"] = new JsonArray(s.LearningRates.Select(l => (JsonNode)l).ToArray()),
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>The options whose change would make a resumed run differ from the uninterrupted one.</summary>
    internal static List<string> Differences(TrainerOptions saved, TrainerOptions now)
    {
        var d = new List<string>();
        void Check<T>(string name, T a, T b)
        {
            if (!EqualityComparer<T>.Default.Equals(a, b)) d.Add($"{name}: checkpoint {a}, now {b}");
        }
        Check("rank", saved.Lora.Rank, now.Lora.Rank);
        Check("alpha", saved.Lora.Alpha, now.Lora.Alpha);
        Check("dropout", saved.Lora.Dropout, now.Lora.Dropout);
        Check("rslora", saved.Lora.UseRslora, now.Lora.UseRslora);
        Check("targets", string.Join(",", saved.Lora.TargetNames.Order()), string.Join(",", now.Lora.TargetNames.Order()));
        Check("batch", saved.BatchSize, now.BatchSize);
        Check("seq", saved.SequenceLength, now.SequenceLength);
        Check("grad-accum", saved.GradientAccumulation, now.GradientAccumulation);
        Check("packing", saved.Packing, now.Packing);
        Check("lr", saved.LearningRate, now.LearningRate);
        Check("weight decay", saved.WeightDecay, now.WeightDecay);
        Check("betas", (saved.Beta1, saved.Beta2), (now.Beta1, now.Beta2));
        Check("eps", saved.Epsilon, now.Epsilon);
        Check("warmup", saved.WarmupSteps, now.WarmupSteps);
        Check("schedule", saved.Schedule, now.Schedule);
        Check("grad-clip", saved.MaxGradNorm ?? 0, now.MaxGradNorm ?? 0);
        Check("seed", saved.Seed, now.Seed);
        Check("shuffle", saved.Shuffle, now.Shuffle);
        return d;
    }
}
