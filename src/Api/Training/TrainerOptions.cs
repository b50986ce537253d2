using SlothSharp.Models;

namespace SlothSharp.Training;

/// <summary>How the learning rate moves after warmup.</summary>
public enum LearningRateSchedule
{
    /// <summary>Half a cosine from the peak down to 0 at the last step (transformers' get_cosine_schedule_with_warmup).</summary>
    Cosine,
    /// <summary>A straight line from the peak down to 0 at the last step (get_linear_schedule_with_warmup).</summary>
    Linear,
    /// <summary>The peak after warmup, unchanged.</summary>
    Constant,
}

/// <summary>
/// Settings of a <see cref="Trainer"/> run. Defaults follow common QLoRA practice (lr 2e-4, AdamW with torch's
/// defaults and weight decay 0.01, cosine schedule, gradient clipping at 1.0).
/// </summary>
public sealed record TrainerOptions
{
    /// <summary>Deterministic GPU kernels (PyTorch's use_deterministic_algorithms), so a resumed run
    /// repeats an uninterrupted one's losses on CUDA as it does on the CPU. Process-wide; for cuBLAS it needs
    /// CUBLAS_WORKSPACE_CONFIG set before the first GEMM (<see cref="Determinism.Enable"/> sets it when it can).</summary>
    public bool Deterministic { get; init; } = true;

    /// <summary>LoRA adapters added to the model when it has none.</summary>
    public LoraConfig Lora { get; init; } = new();

    /// <summary>Optimizer steps. Null: derived from <see cref="Epochs"/>.</summary>
    public int? MaxSteps { get; init; }

    /// <summary>Passes over the data (fractions allowed) when <see cref="MaxSteps"/> is null.</summary>
    public double Epochs { get; init; } = 1;

    /// <summary>Rows per micro-batch.</summary>
    public int BatchSize { get; init; } = 4;

    /// <summary>Tokens per row (T). Longer documents are split into windows of T tokens.</summary>
    public int SequenceLength { get; init; } = 512;

    /// <summary>Micro-batches per optimizer step; the loss is normalized by the token count of all of them together.</summary>
    public int GradientAccumulation { get; init; } = 1;

    /// <summary>Pack documents into full rows of T tokens (EOS between documents) instead of one padded row per document.</summary>
    public bool Packing { get; init; }

    public double LearningRate { get; init; } = 2e-4;
    public double WeightDecay { get; init; } = 0.01;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Steps of linear warmup from 0 to <see cref="LearningRate"/>.</summary>
    public int WarmupSteps { get; init; }

    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Cosine;

    /// <summary>Clip the global L2 norm of the adapter gradients to this; null or 0: no clipping.</summary>
    public double? MaxGradNorm { get; init; } = 1.0;

    /// <summary>Recompute each decoder layer in backward (less activation memory, about a third more compute).</summary>
    public bool GradientCheckpointing { get; init; }

    /// <summary>Recompute attention and the norm outputs that feed projections in backward instead of keeping them
    /// (<see cref="Models.CausalLM.RecomputeAttention"/> and <see cref="Models.CausalLM.RecomputeNorms"/>; fused kernels
    /// only, the same losses and gradients bit for bit). Phi-4-mini at 8 × 1,024 tokens on an H100: 5.2 GB less for 3%
    /// fewer tokens/s. A sharded model must be given these before sharding (<c>sloth finetune --gpus</c> does).</summary>
    public bool RecomputeActivations { get; init; }

    /// <summary>Recompute only the norm outputs that feed projections in backward (<see cref="Models.CausalLM.RecomputeNorms"/>;
    /// the cheaper half of <see cref="RecomputeActivations"/>, which includes it). Phi-4-mini at 8 × 1,024 tokens on an
    /// H100: 3.1 GB less for 1% fewer tokens/s (26,278 tokens/s at 22.6 GB; bench/results/2026-12-06-h100-round16).</summary>
    public bool RecomputeNorms { get; init; }

    /// <summary>Use the generic chunked loss (<see cref="Losses.ChunkedLinearLoss.CrossEntropy"/>) instead of the fused kernel.</summary>
    public bool ChunkedLoss { get; init; }

    /// <summary>Rows per loss chunk; null: the loss's default byte budget.</summary>
    public int? LossChunkRows { get; init; }

    /// <summary>Seeds the adapters' initialization, the data order and the dropout masks.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>Shuffle the rows every epoch (seeded); false: file order.</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>Where the final adapter, checkpoints/ and reports go; null: nothing is written.</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Write a training checkpoint every this many steps (0: only at the end and on interruption).</summary>
    public int SaveEvery { get; init; }

    /// <summary>Checkpoints kept in checkpoints/ (the newest ones).</summary>
    public int KeepCheckpoints { get; init; } = 2;

    /// <summary>Data-parallel runs: shard AdamW's state over the ranks (<see cref="Distributed.ShardedAdamW"/>, ZeRO-2
    /// style: the local gradients are reduce-scattered, each rank clips and updates its 1/N of the adapters' flat vector
    /// and keeps only that part's moments, then the updated adapters are all-gathered). Null: on when the communicator
    /// has more than one rank. True with one rank (or with no communicator: a rank of one) runs the same code on one
    /// chunk. Not saved in a checkpoint: a checkpoint's optimizer file has the same layout either way, so a run may be
    /// resumed with another rank count or another setting.</summary>
    public bool? ShardOptimizer { get; init; }

    /// <summary>With the sharded optimizer: keep this rank's AdamW moments in host memory (the update of its chunk
    /// runs on the CPU; the chunk's gradient and parameters travel there and back each step).</summary>
    public bool OffloadOptimizerState { get; init; }

    /// <summary>Written as base_model_name_or_path into adapter_config.json; null: the model's source directory.</summary>
    public string? BaseModelNameOrPath { get; init; }

    internal void Validate()
    {
        static void Positive(int value, string name)
        {
            if (value < 1) throw new ArgumentOutOfRangeException(name, value, "must be >= 1");
        }
        Positive(BatchSize, nameof(BatchSize));
        Positive(GradientAccumulation, nameof(GradientAccumulation));
        if (SequenceLength < 2) throw new ArgumentOutOfRangeException(nameof(SequenceLength), SequenceLength, "must be >= 2 (one input and one target)");
        if (MaxSteps is { } s) Positive(s, nameof(MaxSteps));
        if (MaxSteps is null && !(Epochs > 0)) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "must be > 0");
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "must be finite and > 0");
        if (!(WeightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "must be >= 0");
        if (!(Beta1 is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "must be in [0, 1)");
        if (!(Beta2 is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "must be in [0, 1)");
        if (!(Epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, "must be > 0");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "must be >= 0");
        if (MaxGradNorm is { } g && !(g >= 0)) throw new ArgumentOutOfRangeException(nameof(MaxGradNorm), g, "must be >= 0");
        if (SaveEvery < 0) throw new ArgumentOutOfRangeException(nameof(SaveEvery), SaveEvery, "must be >= 0");
        if (KeepCheckpoints < 1) throw new ArgumentOutOfRangeException(nameof(KeepCheckpoints), KeepCheckpoints, "must be >= 1");
        if (LossChunkRows is { } c) Positive(c, nameof(LossChunkRows));
        if (OffloadOptimizerState && ShardOptimizer == false)
            throw new ArgumentException("OffloadOptimizerState needs the sharded optimizer (ShardOptimizer true or null)", nameof(OffloadOptimizerState));
    }

    /// <summary>Learning rate of 0-based optimizer step <paramref name="step"/> of <paramref name="totalSteps"/>
    /// (transformers' schedules: warmup step s has lr·s/warmup, so the first step of a warmup has lr 0).</summary>
    public double LearningRateAt(int step, int totalSteps)
    {
        if (step < WarmupSteps) return LearningRate * step / Math.Max(1, WarmupSteps);
        var progress = (double)(step - WarmupSteps) / Math.Max(1, totalSteps - WarmupSteps);
        return Schedule switch
        {
            LearningRateSchedule.Cosine => LearningRate * Math.Max(0, 0.5 * (1 + Math.Cos(Math.PI * progress))),
            LearningRateSchedule.Linear => LearningRate * Math.Max(0, 1 - progress),
            _ => LearningRate,
        };
    }
}

/// <summary>One optimizer step's report (<see cref="Trainer.Train"/> sends one after every step).</summary>
/// <param name="Step">steps done (1-based)</param>
/// <param name="TotalSteps">steps of the whole run</param>
/// <param name="LearningRate">the learning rate the step used</param>
/// <param name="Eta">estimated time to the last step</param>
/// <param name="GpuMemoryTotalBytes">the device's memory on CUDA; null on the CPU</param>
/// <param name="Loss">mean token cross-entropy of the step (all micro-batches)</param>
/// <param name="GradNorm">global L2 norm of the adapter gradients before clipping</param>
/// <param name="TokensPerSecond">non-padding tokens per second since this process started training</param>
/// <param name="GpuMemoryUsedBytes">device memory in use (cudaMemGetInfo) on CUDA; null on the CPU</param>
public sealed record TrainProgress(int Step, int TotalSteps, double Loss, double LearningRate, double GradNorm,
                                   double TokensPerSecond, TimeSpan Eta, long? GpuMemoryUsedBytes, long? GpuMemoryTotalBytes);

/// <summary>What a <see cref="Trainer.Train"/> call did.</summary>
/// <param name="Losses">the loss of every step of the run so far, step 1 first (resumed runs include the earlier steps)</param>
/// <param name="LearningRates">the learning rate of every step</param>
/// <param name="Steps">steps done</param>
/// <param name="TotalSteps">steps of the whole run</param>
/// <param name="Tokens">non-padding tokens trained on (all steps)</param>
/// <param name="Elapsed">wall time of this call</param>
/// <param name="Interrupted">stopped by the cancellation token before the last step (a checkpoint was written)</param>
/// <param name="AdapterDirectory">where the final adapter was written (null: no output directory or interrupted)</param>
/// <param name="LastCheckpoint">the newest checkpoint directory written, if any</param>
public sealed record TrainResult(IReadOnlyList<double> Losses, IReadOnlyList<double> LearningRates, int Steps, int TotalSteps,
                                 bool Interrupted, long Tokens, TimeSpan Elapsed, string? AdapterDirectory, string? LastCheckpoint);
