using System.Diagnostics;
using SlothSharp.Losses;
using SlothSharp.IO;
using SlothSharp.Models;
using SlothSharp.Optim;
using SlothSharp.Peft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Training;

/// <summary>
/// QLoRA fine-tuning of a <see cref="LlamaForCausalLM"/>: only the LoRA adapters train (AdamW, torch's update rule),
/// the causal-LM loss goes through <see cref="FusedLinearCrossEntropy"/> (or <see cref="ChunkedLinearLoss"/>) so the
/// [tokens × vocab] logits never exist, and one optimizer step may accumulate several micro-batches whose losses are
/// all divided by the step's total target count (so accumulation gives the same gradient as one big batch).
/// Everything that decides the next step — adapters, AdamW moments, step, data position, seed — is saved in a
/// checkpoint, so <see cref="ResumeFrom"/> continues with the losses an uninterrupted run would have had.
/// Compute runs in the model's dtype (bf16 on CUDA, float32 on the CPU by default); the adapters stay float32.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly LlamaForCausalLM _model;
    private readonly TrainingData _data;
    private readonly DataOrder _order;
    private readonly List<KeyValuePair<string, Parameter>> _params;
    private readonly FusedAdamW _optimizer;
    private readonly List<double> _losses = [];
    private readonly List<double> _lrs = [];
    private long _rowsConsumed;
    private long _tokens;

    /// <summary>Why <see cref="TrainerOptions.Deterministic"/> could not be honoured, or null.</summary>
    public string? DeterminismProblem { get; }

    public Trainer(LlamaForCausalLM model, TrainingData data, TrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (data.SequenceLength > options.SequenceLength)
            throw new ArgumentException($"the data was cut into rows of {data.SequenceLength} tokens, more than the options' SequenceLength {options.SequenceLength}");
        _model = model;
        _data = data;
        Options = options;
        if (options.Deterministic)
        {
            try
            {
                _previousDeterminism = Determinism.Current;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // Enable reports the same problem below.
            }
            if (!Determinism.Enable(out var problem)) DeterminismProblem = problem;
        }
        if (model.Lora is null) model.AddLora(options.Lora, options.Seed);
        _params = model.LoraParameters().ToList();
        if (_params.Count == 0) throw new InvalidOperationException("the model has no LoRA parameters to train (no target module matched)");
        model.GradientCheckpointing = options.GradientCheckpointing;
        _order = new DataOrder(data.Rows.Count, options.Seed, options.Shuffle);
        var rowsPerStep = (long)options.BatchSize * options.GradientAccumulation;
        TotalSteps = options.MaxSteps ?? (int)Math.Max(1, Math.Ceiling(options.Epochs * data.Rows.Count / rowsPerStep));
        _optimizer = new FusedAdamW(_params.Select(p => p.Value), options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay);
    }

    public TrainerOptions Options { get; }
    public int TotalSteps { get; }

    /// <summary>Optimizer steps done (including those before a resume).</summary>
    public int Step { get; private set; }

    /// <summary>Rows consumed so far: the position in the seeded data order.</summary>
    public long DataPosition => _rowsConsumed;

    public IReadOnlyList<double> Losses => _losses;

    /// <summary>Runs steps until <see cref="TotalSteps"/> or until <paramref name="cancel"/> fires (the current step
    /// finishes first, then a checkpoint is written). With an output directory it writes checkpoints every
    /// <see cref="TrainerOptions.SaveEvery"/> steps and the final adapter into the output directory.</summary>
    public TrainResult Train(IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var startStep = Step;
        long sessionTokens = 0;
        string? lastCheckpoint = null;
        var onCuda = _model.Device.type == DeviceType.CUDA;
        var gpu = Math.Max(0, (int)_model.Device.index);
        while (Step < TotalSteps && !cancel.IsCancellationRequested)
        {
            var before = _tokens;
            var (loss, gradNorm) = TrainStepCore();
            sessionTokens += _tokens - before;
            var elapsed = clock.Elapsed;
            var done = Step - startStep;
            long? used = null, total = null;
            if (onCuda && CudaDevice.IsAvailable)
            {
                var (free, all) = CudaDevice.MemoryInfo(gpu);
                (used, total) = (all - free, all);
            }
            progress?.Report(new TrainProgress(Step, TotalSteps, loss, _lrs[^1], gradNorm, sessionTokens / Math.Max(1e-9, elapsed.TotalSeconds),
                TimeSpan.FromSeconds(elapsed.TotalSeconds / done * (TotalSteps - Step)), used, total));
            if (Options.OutputDirectory is not null && Options.SaveEvery > 0 && Step % Options.SaveEvery == 0 && Step < TotalSteps)
                lastCheckpoint = SaveCheckpoint();
        }
        var interrupted = Step < TotalSteps;
        string? adapterDir = null;
        if (Options.OutputDirectory is { } outDir)
        {
            // Always leave a checkpoint of where training stopped (interrupted or finished): nothing is lost.
            if (lastCheckpoint is null || !lastCheckpoint.EndsWith(CheckpointName(Step), StringComparison.Ordinal)) lastCheckpoint = SaveCheckpoint();
            if (!interrupted)
            {
                PeftAdapter.Save(_model, outDir, Options.BaseModelNameOrPath);
                adapterDir = outDir;
            }
        }
        return new TrainResult(_losses.ToList(), _lrs.ToList(), Step, TotalSteps, interrupted, _tokens, clock.Elapsed, adapterDir, lastCheckpoint);
    }

    /// <summary>One optimizer step (all its micro-batches); returns the step's mean token loss.</summary>
    public double TrainStep() => TrainStepCore().Loss;

    private (double Loss, double GradNorm) TrainStepCore()
    {
        if (Step >= TotalSteps) throw new InvalidOperationException($"all {TotalSteps} steps are done");
        var o = Options;
        _model.train();
        // Dropout masks come from the global generator, re-seeded per step: the step number is the whole RNG state.
        var stepSeed = (long)(SplitMix64.Mix((ulong)o.Seed, (ulong)Step) >> 1);
        manual_seed(stepSeed);
        if (_model.Device.type == DeviceType.CUDA) cuda.manual_seed_all(stepSeed);

        var lr = o.LearningRateAt(Step, TotalSteps);
        _optimizer.LearningRate = lr;

        var micro = new List<int[]>();
        for (var m = 0; m < o.GradientAccumulation; m++)
            micro.Add(Enumerable.Range(0, o.BatchSize).Select(i => _order.RowAt(_rowsConsumed + (long)m * o.BatchSize + i)).ToArray());
        // One normalizer for the whole step: the targets of all micro-batches (each row of n tokens has n−1).
        double targets = micro.Sum(rows => rows.Sum(r => (long)_data.Rows[r].Length - 1));

        _optimizer.zero_grad();
        var lossOptions = new CrossEntropyOptions { Reduction = LossReduction.Mean, Normalizer = targets, ChunkRows = o.LossChunkRows };
        double stepLoss = 0;
        long tokens = 0;
        foreach (var rows in micro)
        {
            using var scope = NewDisposeScope();
            var (ids, mask, labels, n, _) = _data.Collate(rows, _model.Device);
            tokens += n;
            var hidden = _model.Forward(ids, mask);
            var t = hidden.shape[1];
            var h = hidden.narrow(1, 0, t - 1);
            var y = labels.narrow(1, 1, t - 1);
            var head = _model.LmHeadWeight;
            var loss = o.ChunkedLoss
                ? ChunkedLinearLoss.CrossEntropy(h, head, null, y, lossOptions)
                : FusedLinearCrossEntropy.Apply(h, head, null, y, lossOptions);
            loss.backward();
            stepLoss += loss.to(ScalarType.Float64).item<double>();
        }
        double gradNorm;
        using (var scope = NewDisposeScope())
        {
            var parameters = _params.Select(p => p.Value).ToList();
            gradNorm = o.MaxGradNorm is > 0
                ? nn.utils.clip_grad_norm_(parameters, o.MaxGradNorm.Value)
                : GlobalNorm(parameters);
        }
        _optimizer.step();
        _rowsConsumed += (long)o.BatchSize * o.GradientAccumulation;
        _tokens += tokens;
        Step++;
        _losses.Add(stepLoss);
        _lrs.Add(lr);
        return (stepLoss, gradNorm);
    }

    private static double GlobalNorm(List<Parameter> parameters)
    {
        double sum = 0;
        foreach (var p in parameters)
        {
            var g = p.grad;
            if (g is null) continue;
            using var n = g.to(ScalarType.Float64).pow(2).sum();
            sum += n.item<double>();
        }
        return Math.Sqrt(sum);
    }

    private static string CheckpointName(int step) => $"{TrainingCheckpoint.DirectoryPrefix}{step:D6}";

    /// <summary>Writes a checkpoint into OUT/checkpoints/step-NNNNNN (into a temporary directory first, renamed when
    /// complete) and removes the oldest ones beyond <see cref="TrainerOptions.KeepCheckpoints"/>. Returns its path.</summary>
    public string SaveCheckpoint()
    {
        var outDir = Options.OutputDirectory ?? throw new InvalidOperationException("TrainerOptions.OutputDirectory is not set: nowhere to write a checkpoint");
        var root = Path.Combine(outDir, "checkpoints");
        Directory.CreateDirectory(root);
        var final = Path.Combine(root, CheckpointName(Step));
        using (var staging = StagingDirectory.Beside(final))
        {
            var tmp = staging.Path;
            PeftAdapter.Save(_model, tmp, Options.BaseModelNameOrPath);
            SaveOptimizer(Path.Combine(tmp, TrainingCheckpoint.OptimizerFile));
            File.WriteAllText(Path.Combine(tmp, TrainingCheckpoint.StateFile), TrainingCheckpoint.Serialize(new TrainingCheckpoint.State(
                Step, TotalSteps, _rowsConsumed, _tokens, _losses, _lrs, Options, _data.Fingerprint, _data.Rows.Count, _model.SourceDirectory)));
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            staging.MoveTo(final);
        }
        foreach (var old in Directory.GetDirectories(root, TrainingCheckpoint.DirectoryPrefix + "*").Order(StringComparer.Ordinal)
                     .SkipLast(Options.KeepCheckpoints))
            Directory.Delete(old, recursive: true);
        return final;
    }

    private List<FusedAdamW.State> OptimizerStates()
    {
        var states = _optimizer.States.ToList();
        if (states.Count != _params.Count) throw new InvalidOperationException($"AdamW holds {states.Count} states for {_params.Count} adapter tensors");
        return states;
    }

    private void SaveOptimizer(string path)
    {
        using var scope = NewDisposeScope();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var ((name, _), s) in _params.Zip(OptimizerStates()))
        {
            var key = PeftAdapter.KeyPrefix + name;
            tensors.Add(new(key + ".exp_avg", s.ExpAvg.detach().cpu()));
            tensors.Add(new(key + ".exp_avg_sq", s.ExpAvgSq.detach().cpu()));
            tensors.Add(new(key + ".step", tensor(new[] { s.Step })));
        }
        SafetensorsWriter.Save(path, tensors);
    }

    /// <summary>Continues from a checkpoint (a step-N directory, or a directory holding them, or an output directory
    /// with checkpoints/): loads the adapters and AdamW's state, the step, the data position and the loss history.
    /// The options and the data must be those of the checkpoint (the differences are listed otherwise).</summary>
    public void ResumeFrom(string dir)
    {
        var ckpt = TrainingCheckpoint.Resolve(dir);
        var state = TrainingCheckpoint.Read(ckpt);
        var statePath = Path.Combine(ckpt, TrainingCheckpoint.StateFile);
        var diffs = TrainingCheckpoint.Differences(state.Options, Options);
        if (state.TotalSteps != TotalSteps) diffs.Add($"total steps: checkpoint {state.TotalSteps}, now {TotalSteps}");
        if (diffs.Count > 0)
            throw new InvalidDataException($"{statePath}: the checkpoint was trained with other settings ({string.Join("; ", diffs)}); resume with the checkpoint's options");
        if (state.DataFingerprint != _data.Fingerprint || state.DataRows != _data.Rows.Count)
            throw new InvalidDataException($"{statePath}: the training data differs from the checkpoint's ({state.DataRows} rows, fingerprint " +
                $"{state.DataFingerprint[..12]}…; now {_data.Rows.Count} rows, {_data.Fingerprint[..12]}…)");
        PeftAdapter.Load(_model, ckpt);
        var optPath = Path.Combine(ckpt, TrainingCheckpoint.OptimizerFile);
        if (!File.Exists(optPath)) throw new FileNotFoundException($"{optPath}: missing (the optimizer state)", optPath);
        using (var reader = new SafetensorsReader(optPath))
        using (no_grad())
        {
            foreach (var ((name, p), s) in _params.Zip(OptimizerStates()))
            {
                var key = PeftAdapter.KeyPrefix + name;
                foreach (var (suffix, target) in new[] { (".exp_avg", s.ExpAvg), (".exp_avg_sq", s.ExpAvgSq) })
                {
                    if (!reader.Entries.TryGetValue(key + suffix, out var e)) throw new InvalidDataException($"{optPath}: tensor '{key + suffix}' is missing");
                    if (!e.Shape.SequenceEqual(p.shape)) throw new InvalidDataException($"{optPath}: tensor '{key + suffix}' has shape [{string.Join(", ", e.Shape)}], expected [{string.Join(", ", p.shape)}]");
                    using var t = reader.Read(key + suffix);
                    target.copy_(t);
                }
                if (!reader.Entries.ContainsKey(key + ".step")) throw new InvalidDataException($"{optPath}: tensor '{key}.step' is missing");
                using var step = reader.Read(key + ".step");
                s.Step = step.to(ScalarType.Int64).flatten()[0].item<long>();  // one count shared by all tensors
            }
        }
        Step = state.Step;
        _rowsConsumed = state.RowsConsumed;
        _tokens = state.Tokens;
        _losses.Clear();
        _losses.AddRange(state.Losses);
        _lrs.Clear();
        _lrs.AddRange(state.LearningRates);
    }

    /// <summary>Frees the optimizer state and puts the process's deterministic-mode setting back as it was.</summary>
    public void Dispose()
    {
        _optimizer.Dispose();
        if (_previousDeterminism is { } previous) Determinism.Restore(previous);
        _previousDeterminism = null;
    }

    private (bool Enabled, bool WarnOnly)? _previousDeterminism;
}
