using SlothSharp.Data;
using SlothSharp.Losses;
using SlothSharp.Models;
using SlothSharp.Ops;
using SlothSharp.Optim;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Bench;

/// <summary>A training-step benchmark shape: model, tokens per step, and how many steps each measurement runs.</summary>
internal sealed record StepShape(string Name, string Description, ModelConfig Config, int Batch, int SeqLen, int Warmup,
                                 int Timed, int ProfileSteps, int LossSteps)
{
    public static readonly string[] GpuShapes = ["1b", "demo"];

    /// <summary>The other families' published shapes (fused path; mistral-7b with every layer checkpointed, as its
    /// transformers anchor needs to fit).</summary>
    public static readonly string[] FamilyShapes = ["qwen2.5-1.5b", "qwen3-1.7b", "gemma-3-1b", "gemma-2-2b", "phi-4-mini", "mistral-7b", "llama-3.1-8b"];

    /// <summary>"&lt;family shape&gt;-loss": the family's published layer shape, vocabulary and attention options cut to six
    /// layers (Gemma 3's five local : one global pattern once), 2 × 1024 tokens: the 100-step fused-vs-reference loss
    /// match of every family within a lease's minutes.</summary>
    public const string LossSuffix = "-loss";

    /// <summary>"&lt;family shape&gt;-prof": two layers of the family's published shape at the full 8 × 1024 tokens, two
    /// warm-up steps and one timed step: a row small enough to run under Nsight Compute, whose kernels per layer and LM
    /// head are those of the full shape. Two warm-up steps, because the fused loss's GEMM tuner times its candidates on
    /// a shape's second call: with one, a --profile-timed profile caught them (bench/results/2026-12-07-round22).</summary>
    public const string ProfileSuffix = "-prof";

    public static StepShape Get(string name) => name switch
    {
        "1b" => new(name, "Llama-3.2-1B (16 layers, hidden 2048, 32/8 heads, MLP 8192, vocab 128256, tied embeddings)",
            ModelPresets.Llama32_1B, 8, 1024, 10, 20, 5, 100),
        "demo" => new(name, "demo (4 layers, hidden 2048, 16/8 heads, head dim 128, MLP 8192, vocab 100277, tied embeddings)",
            ModelPresets.Llama32_1B with { NumHiddenLayers = 4, NumAttentionHeads = 16, NumKeyValueHeads = 8, HeadDim = 128, VocabSize = 100277 },
            8, 1024, 10, 20, 5, 100),
        // The CPU smoke test of every code path (ModelPresets.Tiny: 2 layers, hidden 64, vocab 420).
        "tiny" => new(name, "tiny (2 layers, hidden 64, 4/2 heads, MLP 160, vocab 420; CPU smoke test)",
            ModelPresets.Tiny, 2, 32, 2, 3, 2, 10),
        // The model families at their published shapes (ModelPresets), against transformers + PEFT + bitsandbytes.
        _ when name.EndsWith(LossSuffix, StringComparison.Ordinal) && FamilyShapes.Contains(name[..^LossSuffix.Length]) =>
            new(name, $"{name} (six layers of {ModelPresets.Get(name[..^LossSuffix.Length])})",
                ModelPresets.Get(name[..^LossSuffix.Length]) with { NumHiddenLayers = 6 }, 2, 1024, 1, 1, 1, 100),
        _ when name.EndsWith(ProfileSuffix, StringComparison.Ordinal) && FamilyShapes.Contains(name[..^ProfileSuffix.Length]) =>
            new(name, $"{name} (two layers of {ModelPresets.Get(name[..^ProfileSuffix.Length])})",
                ModelPresets.Get(name[..^ProfileSuffix.Length]) with { NumHiddenLayers = 2 }, 8, 1024, 2, 1, 0, 100),
        _ when FamilyShapes.Contains(name) => new(name, $"{name} ({ModelPresets.Get(name)})", ModelPresets.Get(name), 8, 1024, 5, 10, 2, 100),
        _ => throw new ArgumentException($"--shape: unknown step shape '{name}' (1b, demo, tiny, {string.Join(", ", FamilyShapes)})"),
    };

    /// <summary>One decoder layer and a small vocabulary with this shape's heads: run once before the idle-memory
    /// reading, so that cuBLAS's handle and workspace and the kernels this path loads are not counted as the step's.</summary>
    public ModelConfig WarmupConfig => Config with { NumHiddenLayers = 1, VocabSize = 512, HiddenSize = 256, IntermediateSize = 512 };

    public long TokensPerStep => (long)Batch * SeqLen;
}

/// <summary>
/// One QLoRA training setup as the step benchmark runs it: an in-memory random NF4 Llama (<see cref="CausalLM.CreateRandom"/>,
/// seed 0), LoRA r16/alpha32 on all seven projections (seed 1), bf16 compute, AdamW (no weight decay) at lr 2e-4 on
/// the adapters (<see cref="FusedAdamW"/>: flat buffers, a few kernels per step), random token ids (four fixed batches, cycled), the loss through <see cref="CausalLmLoss"/>
/// on the shifted labels.
/// </summary>
internal sealed class StepWorkload : IDisposable
{
    public const int DistinctBatches = 4;

    private readonly List<Tensor> _batches = [];
    private readonly FusedAdamW _optimizer;

    /// <param name="batch">Rows of the random batches; 0: none are made (the caller steps on its own batches through
    /// <see cref="Step(TrainingBatch, Action{int}?)"/>).</param>
    /// <param name="checkpointInterval">0: no gradient checkpointing; k ≥ 1: every k-th decoder layer (from layer 0)
    /// is recomputed in backward (1 = all).</param>
    /// <param name="recomputeAttention">CausalLM.RecomputeAttention (with the fused kernels).</param>
    /// <param name="recomputeNorms">CausalLM.RecomputeNorms (with the fused kernels).</param>
    /// <param name="softcapFlash">CausalLM.SoftcapAttentionMethod = Flash (soft-capped attention by the one-pass kernels).</param>
    public StepWorkload(ModelConfig config, int batch, int seqLen, Device device, bool fused, int checkpointInterval,
                        bool recomputeAttention = false, bool recomputeNorms = false, bool softcapFlash = false)
    {
        Device = device;
        Model = CausalLM.CreateRandom(config, 0, new LoadOptions { Device = device, ComputeDtype = ScalarType.BFloat16 });
        Model.AddLora(new LoraConfig(Rank: 16, Alpha: 32), seed: 1);
        Model.UseFusedKernels = fused;
        Model.RecomputeAttention = recomputeAttention;
        Model.RecomputeNorms = recomputeNorms;
        if (softcapFlash) Model.SoftcapAttentionMethod = SoftcapAttentionMethod.Flash;
        Model.GradientCheckpointing = checkpointInterval > 0;
        if (checkpointInterval > 0) Model.GradientCheckpointingInterval = checkpointInterval;
        Model.train();
        // No weight decay: what round 2's optim.AdamW(lr: 2e-4) did (TorchSharp's default is 0), so losses compare.
        _optimizer = new FusedAdamW(Model.LoraParameters().Select(kv => kv.Value), lr: 2e-4, weightDecay: 0);
        // Drawn on the CPU from a fixed seed: the same ids for every process and path.
        using var gen = new Generator(1234);
        for (var i = 0; i < (batch > 0 ? DistinctBatches : 0); i++)
            _batches.Add(randint(0, config.VocabSize, [batch, seqLen], ScalarType.Int64, generator: gen).to(device).DetachFromDisposeScope());
    }

    public CausalLM Model { get; }
    public Device Device { get; }

    /// <summary>One optimizer step on batch <paramref name="index"/> mod 4. <paramref name="phase"/> is called after
    /// forward (0), loss (1), backward (2) and the optimizer (3). Returns the loss (float32 scalar, the caller's).</summary>
    public Tensor Step(int index, Action<int>? phase = null)
    {
        var ids = _batches[index % _batches.Count];
        return Optimize(() => Model.Forward(ids), ids, phase);
    }

    /// <summary>One optimizer step on a collated batch (padded rows, or packed rows with restarting positions and
    /// block-diagonal attention when it holds several documents per row); the loss is the mean over its trained
    /// targets. <paramref name="phase"/> as in <see cref="Step(int, Action{int}?)"/>.</summary>
    public Tensor Step(TrainingBatch batch, Action<int>? phase = null) =>
        Optimize(() => batch.MultiDocument
            ? Model.Forward(batch.InputIds, batch.AttentionMask, null, batch.PositionIds, batch.SequenceIds)
            : Model.Forward(batch.InputIds, batch.AttentionMask), batch.Labels, phase);

    /// <summary>Forward, the causal-LM loss against <paramref name="labels"/>, backward, AdamW, with the phase marks.</summary>
    private Tensor Optimize(Func<Tensor> forward, Tensor labels, Action<int>? phase)
    {
        using var scope = NewDisposeScope();
        _optimizer.zero_grad();
        var hidden = forward();
        phase?.Invoke(0);
        var loss = CausalLmLoss.Compute(Model, hidden, labels, BenchSetup.LossOptions);
        phase?.Invoke(1);
        loss.backward();
        phase?.Invoke(2);
        _optimizer.step();
        phase?.Invoke(3);
        return loss.detach().MoveToOuterDisposeScope();
    }

    public void Synchronize()
    {
        if (Device.type == TorchSharp.DeviceType.CUDA) CudaDevice.Synchronize(Math.Max(0, (int)Device.index));
    }

    public void Dispose()
    {
        _optimizer.Dispose();
        foreach (var b in _batches) b.Dispose();
        Model.Dispose();
    }
}
