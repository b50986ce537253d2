using System.Diagnostics;
using SlothSharp.Distributed;
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
/// QLoRA fine-tuning of a <see cref="CausalLM"/>: only the LoRA adapters train (AdamW, torch's update rule),
/// the causal-LM loss goes through <see cref="FusedLinearCrossEntropy"/> (or <see cref="ChunkedLinearLoss"/>) so the
/// [tokens × vocab] logits never exist, and one optimizer step may accumulate several micro-batches whose losses are
/// all divided by the step's total target count (so accumulation gives the same gradient as one big batch).
/// Everything that decides the next step — adapters, AdamW moments, step, data position, seed — is saved in a
/// checkpoint, so <see cref="ResumeFrom"/> continues with the losses an uninterrupted run would have had.
/// Compute runs in the model's dtype (bf16 on CUDA, float32 on the CPU by default); the adapters stay float32.
/// <para>Data-parallel (with an <see cref="ICommunicator"/>): every rank builds the same global micro-batches from the
/// same data; rank r computes rows r, r + N, r + 2N, … of each, with the step's ONE global target count as the loss
/// normalizer, and the adapter gradients and losses are summed over the ranks (one flat all-reduce) before clipping
/// and the optimizer step, so every rank takes the 1-rank run's step on identical replicated adapters. Rank 0 alone
/// writes checkpoints and the adapter; a stop request is agreed on by all ranks (they stop after the same step). The
/// model may be a <see cref="ShardedCausalLM"/>'s (each forward is then a sequence of collectives: BatchSize must be
/// ≥ the number of ranks). LoRA dropout draws different masks than the 1-rank run (each rank sees other rows).</para>
/// <para>With <see cref="TrainerOptions.ShardOptimizer"/> (the default with more than one rank) the gradients stay
/// local and <see cref="ShardedAdamW"/> reduce-scatters them, clips, updates each rank's 1/N of the adapters and
/// all-gathers them; a checkpoint then gathers the moments from every rank (all ranks call the save, rank 0 writes
/// the same optimizer file as the unsharded optimizer), and a resume takes each rank's part of that file, whatever
/// the rank count or optimizer it was written with.</para>
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly CausalLM _model;
    private readonly TrainingData _data;
    private readonly DataOrder _order;
    private readonly List<KeyValuePair<string, Parameter>> _params;
    private readonly FusedAdamW? _optimizer;
    private readonly ShardedAdamW? _sharded;
    private readonly InProcessCommunicator? _ownComm;  // the one-rank group of a sharded optimizer without a communicator
    private readonly List<double> _losses = [];
    private readonly List<double> _lrs = [];
    private readonly ICommunicator? _comm;
    private long _rowsConsumed;
    private long _tokens;

    /// <summary>Why <see cref="TrainerOptions.Deterministic"/> could not be honoured, or null.</summary>
    public string? DeterminismProblem { get; }

    public Trainer(CausalLM model, TrainingData data, TrainerOptions options) : this(model, data, options, null)
    {
    }

    /// <summary>A data-parallel trainer: rank <c>communicator.Rank</c> of <c>communicator.Size</c> (see the class
    /// remarks). Every rank must construct it with the same model files, data and options; null is the plain
    /// one-process trainer.</summary>
    public Trainer(CausalLM model, TrainingData data, TrainerOptions options, ICommunicator? communicator)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (data.SequenceLength > options.SequenceLength)
            throw new ArgumentException($"the data was cut into rows of {data.SequenceLength} tokens, more than the options' SequenceLength {options.SequenceLength}");
        if (communicator is not null && options.BatchSize < communicator.Size)
            throw new ArgumentException($"BatchSize {options.BatchSize} is below the number of ranks {communicator.Size}: every rank needs at least one row of each micro-batch", nameof(options));
        _model = model;
        _data = data;
        _comm = communicator;
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
        if (communicator is { Size: > 1 })
        {
            // The replicas start equal whatever each rank's initialization gave (a collective).
            using var noGrad = no_grad();
            foreach (var (_, p) in _params) communicator.Broadcast(p, 0);
        }
        model.GradientCheckpointing = options.GradientCheckpointing;
        ApplyRecomputation(model, options);
        _order = new DataOrder(data.Rows.Count, options.Seed, options.Shuffle);
        var rowsPerStep = (long)options.BatchSize * options.GradientAccumulation;
        TotalSteps = options.MaxSteps ?? (int)Math.Max(1, Math.Ceiling(options.Epochs * data.Rows.Count / rowsPerStep));
        if (options.ShardOptimizer ?? (options.OffloadOptimizerState || communicator is { Size: > 1 }))
        {
            var comm = communicator ?? (_ownComm = InProcessCommunicator.CreateGroup(1)[0]);
            _sharded = new ShardedAdamW(_params.Select(p => p.Value), comm, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay,
                                        options.OffloadOptimizerState);
        }
        else
        {
            _optimizer = new FusedAdamW(_params.Select(p => p.Value), options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay);
        }
    }

    /// <summary>The sharded optimizer of this run (<see cref="TrainerOptions.ShardOptimizer"/>), or null.</summary>
    public ShardedAdamW? ShardedOptimizer => _sharded;

    public TrainerOptions Options { get; }
    public int TotalSteps { get; }

    /// <summary>Optimizer steps done (including those before a resume).</summary>
    public int Step { get; private set; }

    /// <summary>Rows consumed so far: the position in the seeded data order.</summary>
    public long DataPosition => _rowsConsumed;

    public IReadOnlyList<double> Losses => _losses;

    /// <summary>The communicator of a data-parallel run, or null.</summary>
    public ICommunicator? Communicator => _comm;

    /// <summary>Whether this process writes checkpoints and the adapter: the only rank, or rank 0.</summary>
    public bool IsWriter => _comm is null || _comm.Rank == 0;

    /// <summary>Runs steps until <see cref="TotalSteps"/> or until <paramref name="cancel"/> fires (the current step
    /// finishes first, then a checkpoint is written). With an output directory it writes checkpoints every
    /// <see cref="TrainerOptions.SaveEvery"/> steps and the final adapter into the output directory.</summary>
    public TrainResult Train(IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var startStep = Step;
        long sessionTokens = 0;
        string? lastCheckpoint = null;
        var savedStep = -1;
        var onCuda = _model.Device.type == DeviceType.CUDA;
        var gpu = Math.Max(0, (int)_model.Device.index);
        while (Step < TotalSteps && !StopRequested(cancel))
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
            // The same decision on every rank (a sharded optimizer's save is a collective).
            if (Options.OutputDirectory is not null && Options.SaveEvery > 0 && Step % Options.SaveEvery == 0 && Step < TotalSteps && (IsWriter || _sharded is not null))
            {
                lastCheckpoint = SaveCheckpointCore();
                savedStep = Step;
            }
        }
        var interrupted = Step < TotalSteps;
        string? adapterDir = null;
        if (Options.OutputDirectory is { } outDir && (IsWriter || _sharded is not null))
        {
            // Always leave a checkpoint of where training stopped (interrupted or finished): nothing is lost.
            if (savedStep != Step) lastCheckpoint = SaveCheckpointCore();
            if (!interrupted && IsWriter)
            {
                PeftAdapter.Save(_model, outDir, Options.BaseModelNameOrPath);
                adapterDir = outDir;
            }
        }
        return new TrainResult(_losses.ToList(), _lrs.ToList(), Step, TotalSteps, interrupted, _tokens, clock.Elapsed, adapterDir, lastCheckpoint);
    }

    /// <summary>Whether to stop before the next step. With several ranks the decision is all-reduced (max), so all
    /// stop after the same step even when only some of them saw the signal.</summary>
    private bool StopRequested(CancellationToken cancel)
    {
        if (_comm is not { Size: > 1 } comm) return cancel.IsCancellationRequested;
        using var flag = tensor(new[] { cancel.IsCancellationRequested ? 1f : 0f }).to(_model.Device);
        comm.AllReduce(flag, ReduceOp.Max);
        return flag.item<float>() > 0;
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
        if (_optimizer is not null) _optimizer.LearningRate = lr;

        var micro = new List<int[]>();
        for (var m = 0; m < o.GradientAccumulation; m++)
            micro.Add(Enumerable.Range(0, o.BatchSize).Select(i => _order.RowAt(_rowsConsumed + (long)m * o.BatchSize + i)).ToArray());
        // One normalizer for the whole step: the trained targets of all micro-batches (a row of n tokens has n − 1,
        // fewer where labels are masked: untrained turns, packed documents' first tokens).
        double targets = micro.Sum(rows => rows.Sum(r => (long)_data.RowTargets[r]));

        if (_optimizer is not null) _optimizer.zero_grad();
        else ZeroGradients();
        var lossOptions = new CrossEntropyOptions { Reduction = LossReduction.Mean, Normalizer = targets, ChunkRows = o.LossChunkRows };
        double stepLoss = 0;
        // Tokens of the whole (global) step: every rank counts all ranks' rows.
        var tokens = micro.Sum(rows => rows.Sum(r => (long)_data.Rows[r].Length));
        foreach (var allRows in micro)
        {
            using var scope = NewDisposeScope();
            var rows = _comm is { Size: > 1 } c ? allRows.Where((_, i) => i % c.Size == c.Rank).ToArray() : allRows;
            using var batch = _data.CollateBatch(rows, _model.Device);
            // Packed documents: positions restart and attention stays inside each document (block-diagonal).
            var hidden = batch.MultiDocument
                ? _model.Forward(batch.InputIds, batch.AttentionMask, null, batch.PositionIds, batch.SequenceIds)
                : _model.Forward(batch.InputIds, batch.AttentionMask);
            var labels = batch.Labels;
            var loss = CausalLmLoss.Compute(_model, hidden, labels, lossOptions, o.ChunkedLoss);
            loss.backward();
            stepLoss += loss.to(ScalarType.Float64).item<double>();
        }
        double gradNorm;
        if (_sharded is not null)
        {
            // Local gradients: the sharded optimizer reduce-scatters, clips by the global norm and steps.
            if (_comm is { Size: > 1 }) stepLoss = AllReduceLoss(stepLoss);
            gradNorm = _sharded.Step(lr, o.MaxGradNorm);
        }
        else
        {
            if (_comm is { Size: > 1 }) stepLoss = AllReduceGradientsAndLoss(stepLoss);
            using (var scope = NewDisposeScope())
            {
                var parameters = _params.Select(p => p.Value).ToList();
                gradNorm = o.MaxGradNorm is > 0
                    ? nn.utils.clip_grad_norm_(parameters, o.MaxGradNorm.Value)
                    : GlobalNorm(parameters);
            }
            _optimizer!.step();
        }
        _rowsConsumed += (long)o.BatchSize * o.GradientAccumulation;
        _tokens += tokens;
        Step++;
        _losses.Add(stepLoss);
        _lrs.Add(lr);
        return (stepLoss, gradNorm);
    }

    /// <summary>Sums the adapter gradients (one flat float32 buffer, model order) and the step loss (float64) over the ranks;
    /// every rank ends with the same bits. A parameter without a gradient has none on any rank (same graph
    /// everywhere).</summary>
    private double AllReduceGradientsAndLoss(double localLoss)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var parameters = _params.Select(p => p.Value).ToList();
        var grads = parameters.Select(p => p.grad).ToList();
        var parts = grads.Select((g, i) => (g ?? zeros_like(parameters[i])).reshape(-1).to(ScalarType.Float32)).ToList();
        var flat = cat(parts.ToArray());
        _comm!.AllReduce(flat, ReduceOp.Sum);
        var loss = tensor(new[] { localLoss }).to(_model.Device);
        _comm.AllReduce(loss, ReduceOp.Sum);
        long offset = 0;
        for (var i = 0; i < parameters.Count; i++)
        {
            var n = parameters[i].numel();
            if (grads[i] is { } g) g.copy_(flat.narrow(0, offset, n).view(g.shape));
            offset += n;
        }
        return loss.item<double>();
    }

    private double AllReduceLoss(double localLoss)
    {
        using var scope = NewDisposeScope();
        var loss = tensor(new[] { localLoss }).to(_model.Device);
        _comm!.AllReduce(loss, ReduceOp.Sum);
        return loss.item<double>();
    }

    private void ZeroGradients()
    {
        using var noGrad = no_grad();
        foreach (var (_, p) in _params)
        {
            using var g = p.grad;
            if (g is not null && !g.IsInvalid) g.zero_().Dispose();
        }
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
    /// complete) and removes the oldest ones beyond <see cref="TrainerOptions.KeepCheckpoints"/>. Returns its path.
    /// With a sharded optimizer over several ranks this is a collective (the moments are gathered from every rank):
    /// call <see cref="SaveCheckpointOnAllRanks"/> on every rank instead.</summary>
    public string SaveCheckpoint()
    {
        if (!IsWriter) throw new InvalidOperationException($"rank {_comm!.Rank} does not write checkpoints: rank 0 does");
        if (_sharded is not null && _comm is { Size: > 1 })
            throw new InvalidOperationException("the optimizer is sharded over the ranks: saving gathers its state from all of them; call SaveCheckpointOnAllRanks on every rank");
        return SaveCheckpointCore()!;
    }

    /// <summary>Every rank calls it (a collective with a sharded optimizer); rank 0 writes the checkpoint and returns
    /// its path, the other ranks return null.</summary>
    public string? SaveCheckpointOnAllRanks() => SaveCheckpointCore();

    private string? SaveCheckpointCore()
    {
        // Gathered on every rank (a collective), written by rank 0.
        var gathered = _sharded?.GatherState();
        try
        {
            if (!IsWriter) return null;
            return WriteCheckpoint(gathered);
        }
        finally
        {
            if (gathered is not null)
                foreach (var (m, v) in gathered)
                {
                    m.Dispose();
                    v.Dispose();
                }
        }
    }

    private string WriteCheckpoint(IReadOnlyList<(Tensor ExpAvg, Tensor ExpAvgSq)>? shardedState)
    {
        var outDir = Options.OutputDirectory ?? throw new InvalidOperationException("TrainerOptions.OutputDirectory is not set: nowhere to write a checkpoint");
        var root = Path.Combine(outDir, "checkpoints");
        Directory.CreateDirectory(root);
        var final = Path.Combine(root, CheckpointName(Step));
        using (var staging = StagingDirectory.Beside(final))
        {
            var tmp = staging.Path;
            PeftAdapter.Save(_model, tmp, Options.BaseModelNameOrPath);
            SaveOptimizer(Path.Combine(tmp, TrainingCheckpoint.OptimizerFile), shardedState);
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

    /// <summary>Per adapter tensor, in order: its AdamW moments (views or gathered copies) and the step count.</summary>
    private (List<(Tensor ExpAvg, Tensor ExpAvgSq)> Moments, long Step) OptimizerStates(IReadOnlyList<(Tensor ExpAvg, Tensor ExpAvgSq)>? shardedState)
    {
        var states = shardedState?.ToList() ?? _optimizer!.States.Select(s => (s.ExpAvg, s.ExpAvgSq)).ToList();
        if (states.Count != _params.Count) throw new InvalidOperationException($"AdamW holds {states.Count} states for {_params.Count} adapter tensors");
        return (states, _sharded?.StepCount ?? _optimizer!.StepCount);
    }

    private void SaveOptimizer(string path, IReadOnlyList<(Tensor ExpAvg, Tensor ExpAvgSq)>? shardedState)
    {
        using var scope = NewDisposeScope();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var (moments, step) = OptimizerStates(shardedState);
        foreach (var ((name, _), s) in _params.Zip(moments))
        {
            var key = PeftAdapter.KeyPrefix + name;
            tensors.Add(new(key + ".exp_avg", s.ExpAvg.detach().cpu()));
            tensors.Add(new(key + ".exp_avg_sq", s.ExpAvgSq.detach().cpu()));
            tensors.Add(new(key + ".step", tensor(new[] { step })));
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
        using (var scope = NewDisposeScope())
        using (var reader = new SafetensorsReader(optPath))
        using (no_grad())
        {
            // The checkpoint's full per-tensor moments (the same file whether it was written sharded or not).
            var loaded = new List<(Tensor ExpAvg, Tensor ExpAvgSq)>();
            long stepCount = 0;
            foreach (var (name, p) in _params)
            {
                var key = PeftAdapter.KeyPrefix + name;
                Tensor ReadMoment(string suffix)
                {
                    if (!reader.Entries.TryGetValue(key + suffix, out var e)) throw new InvalidDataException($"{optPath}: tensor '{key + suffix}' is missing");
                    if (!e.Shape.SequenceEqual(p.shape)) throw new InvalidDataException($"{optPath}: tensor '{key + suffix}' has shape [{string.Join(", ", e.Shape)}], expected [{string.Join(", ", p.shape)}]");
                    return reader.Read(key + suffix);
                }
                loaded.Add((ReadMoment(".exp_avg"), ReadMoment(".exp_avg_sq")));
                if (!reader.Entries.ContainsKey(key + ".step")) throw new InvalidDataException($"{optPath}: tensor '{key}.step' is missing");
                using var step = reader.Read(key + ".step");
                stepCount = step.to(ScalarType.Int64).flatten()[0].item<long>();  // one count shared by all tensors
            }
            if (_sharded is not null)
            {
                _sharded.LoadState(loaded, stepCount);
            }
            else
            {
                foreach (var (s, (m, v)) in _optimizer!.States.Zip(loaded))
                {
                    s.ExpAvg.copy_(m);
                    s.ExpAvgSq.copy_(v);
                }
                _optimizer.StepCount = stepCount;
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

    /// <summary><see cref="TrainerOptions.RecomputeActivations"/> and <see cref="TrainerOptions.RecomputeNorms"/> on a
    /// model (<see cref="CausalLM.RecomputeAttention"/> = attention, <see cref="CausalLM.RecomputeNorms"/> = norms), each
    /// set only where it differs (a sharded model refuses changes, and its loader gives it these before sharding).</summary>
    public static void ApplyRecomputation(CausalLM model, bool attention, bool norms)
    {
        if (model.RecomputeAttention != attention) model.RecomputeAttention = attention;
        if (model.RecomputeNorms != norms) model.RecomputeNorms = norms;
    }

    /// <summary><see cref="ApplyRecomputation(CausalLM, bool, bool)"/> with what <paramref name="options"/> asks for.</summary>
    public static void ApplyRecomputation(CausalLM model, TrainerOptions options) =>
        ApplyRecomputation(model, options.RecomputeActivations, options.RecomputeActivations || options.RecomputeNorms);

    /// <summary>Frees the optimizer state and puts the process's deterministic-mode setting back as it was.</summary>
    public void Dispose()
    {
        _optimizer?.Dispose();
        _sharded?.Dispose();
        _ownComm?.Dispose();
        if (_previousDeterminism is { } previous) Determinism.Restore(previous);
        _previousDeterminism = null;
    }

    private (bool Enabled, bool WarnOnly)? _previousDeterminism;
}
