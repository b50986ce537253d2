namespace SlothSharp.Losses;

/// <summary>How per-row losses become the returned value.</summary>
public enum LossReduction
{
    /// <summary>Sum over the non-ignored rows of the whole batch, divided by their count (or by
    /// <see cref="CrossEntropyOptions.Normalizer"/>). Zero non-ignored rows give 0, not NaN.</summary>
    Mean,
    /// <summary>Sum over the non-ignored rows.</summary>
    Sum,
    /// <summary>One value per row, shaped like the leading dimensions of the hidden states (ignored rows are 0);
    /// backward takes a per-row upstream gradient.</summary>
    None,
}

/// <summary>Row chunking of an LM-head loss: either rows per chunk, or a byte budget for one chunk's float32 logits
/// (rows = budget / (V × 4), rounded down to a multiple of <see cref="RowQuantum"/> from 2 × RowQuantum rows on).
/// Neither set: <see cref="DefaultChunkBytes"/>, with at least <see cref="MinDefaultChunkRows"/> rows for the fused loss.</summary>
public record ChunkOptions
{
    /// <summary>Default chunk: 256 MiB of float32-equivalent logits. Measured on an H100 (bench/results) for the fused
    /// loss: for 16384 × 4096 × 128256 it gave 523-row chunks (512 since rows are rounded to <see cref="RowQuantum"/>),
    /// 1.32 GB transient and 0.89× the naive time, where 1046-row chunks took 1.59 GB.</summary>
    public const long DefaultChunkBytes = 256L << 20;

    /// <summary>The smallest default chunk of the fused loss: below this its logits GEMM loses efficiency (for a 256K
    /// vocabulary 262-row chunks cost 1.06× the naive time; the 512-row floor avoids that).</summary>
    public const long MinDefaultChunkRows = 512;

    /// <summary>Rows derived from a byte budget are rounded down to a multiple of this (once there are at least two
    /// multiples): the GEMMs tile the chunk's rows by 128 (logits and dX: M; dW: K), so 523 rows would run 5 row tiles
    /// with the last nearly empty, where 512 rows run 4 full ones. Explicit <see cref="ChunkRows"/> are kept as given.</summary>
    public const long RowQuantum = 128;

    /// <summary>The fused loss's default chunk: 448 MiB of logits in the input dtype (the chunk is the fused loss's only
    /// transient besides the gradients, so this bounds its memory): rows = this / (V × element size), a multiple of
    /// <see cref="RowQuantum"/>, then evened out over the chunks (see <see cref="FusedRowsPerChunk"/>). bf16 gives
    /// 1792 rows at V = 128256 and 896 at V = 256000 (0.46 GB each). Measured on an H100 (bench/results, round 3): the
    /// loop's time falls with larger chunks (fewer dW read-modify-writes), so the budget is as large as the 0.5 GB
    /// transient target of issue 15 allows.</summary>
    public const long FusedDefaultChunkBytes = 448L << 20;

    /// <summary>Rows per chunk (≥ 1); larger than N is fine (one chunk).</summary>
    public int? ChunkRows { get; init; }

    /// <summary>Memory budget in bytes for one chunk's float32 logits.</summary>
    public long? ChunkBytes { get; init; }

    /// <summary>Rows per chunk for a vocabulary of <paramref name="vocab"/>. <paramref name="minDefaultRows"/> applies
    /// only when neither <see cref="ChunkRows"/> nor <see cref="ChunkBytes"/> is set.</summary>
    internal long RowsPerChunk(long vocab, long minDefaultRows = 1)
    {
        if (ChunkRows is { } rows)
        {
            if (rows < 1) throw new ArgumentOutOfRangeException(nameof(ChunkRows), rows, "must be >= 1");
            return rows;
        }
        if (ChunkBytes is { } bytes)
        {
            if (bytes < 1) throw new ArgumentOutOfRangeException(nameof(ChunkBytes), bytes, "must be >= 1");
            return Quantize(Math.Max(1, bytes / (vocab * 4)));
        }
        return Quantize(Math.Max(Math.Max(1, minDefaultRows), DefaultChunkBytes / (vocab * 4)));
    }

    /// <summary>Rows per chunk of the fused loss for <paramref name="rows"/> kept rows, a vocabulary of
    /// <paramref name="vocab"/> and logits of <paramref name="elementSize"/> bytes. Explicit <see cref="ChunkRows"/> or
    /// <see cref="ChunkBytes"/> (float32-equivalent, as for the chunked loss) win; otherwise the largest multiple of
    /// <see cref="RowQuantum"/> whose logits fit <see cref="FusedDefaultChunkBytes"/> (at least one quantum), reduced
    /// to the smallest multiple of the quantum that still needs no more chunks (16384 rows at V = 128256: 10 chunks of
    /// 1664 instead of 9 of 1792 and one of 256, whose GEMMs would run at a fraction of the speed).</summary>
    internal long FusedRowsPerChunk(long rows, long vocab, long elementSize)
    {
        if (ChunkRows is not null || ChunkBytes is not null) return RowsPerChunk(vocab);
        var max = Math.Max(RowQuantum, FusedDefaultChunkBytes / (Math.Max(1, vocab) * Math.Max(1, elementSize)) / RowQuantum * RowQuantum);
        if (rows <= max) return Math.Max(1, rows);
        var chunks = (rows + max - 1) / max;
        var even = (rows + chunks - 1) / chunks;
        return Math.Min(max, (even + RowQuantum - 1) / RowQuantum * RowQuantum);
    }

    private static long Quantize(long rows) => rows >= 2 * RowQuantum ? rows - rows % RowQuantum : rows;
}

/// <summary>Options of the cross-entropy LM-head losses, the same for <see cref="ChunkedLinearLoss.CrossEntropy"/>
/// and <see cref="FusedLinearCrossEntropy.Apply"/>, so code can switch between them.
/// Per row, with z = logit_scale · (h·Wᵀ + b), then softcap > 0: z = softcap · tanh(z / softcap):
/// loss = (1 − ε)(lse − z_y) + ε(lse − mean_j z_j) + z_loss · lse², lse = log Σ_j exp z_j.</summary>
public sealed record CrossEntropyOptions : ChunkOptions
{
    /// <summary>Rows whose label equals this are ignored (no loss, no gradient, not counted by Mean).</summary>
    public long IgnoreIndex { get; init; } = -100;

    public LossReduction Reduction { get; init; } = LossReduction.Mean;

    /// <summary>With <see cref="LossReduction.Mean"/>: divide the summed loss by this instead of the batch's
    /// non-ignored row count (gradient accumulation over micro-batches with one global token count).</summary>
    public double? Normalizer { get; init; }

    /// <summary>Label smoothing ε in [0, 1].</summary>
    public double LabelSmoothing { get; init; }

    /// <summary>Logit soft-capping t (Gemma 2): z ← t·tanh(z/t). 0 = off.</summary>
    public double Softcap { get; init; }

    /// <summary>Multiplies the logits before everything else (1 / temperature).</summary>
    public double LogitScale { get; init; } = 1.0;

    /// <summary>Coefficient of the z-loss term lse² (PaLM uses 1e-4). 0 = off.</summary>
    public double ZLoss { get; init; }

    /// <summary>Fused path only: accumulate dW over chunks in float32 (costs a float32 V × H buffer and a
    /// V × H temporary per chunk); otherwise dW accumulates in W's dtype through GEMM with beta = 1.</summary>
    public bool AccumulateWeightGradInFloat32 { get; init; }

    /// <summary>Fused path, Mean/Sum, W a leaf that requires grad and whose .grad is null when backward runs (the first
    /// backward after zero_grad(set_to_none) or a fresh model): backward makes its dW buffer W.grad itself instead of
    /// returning it to the autograd engine, which would copy it (a dW-sized copy and transient: 1.05 GB at
    /// 128256 × 4096 bf16). The result is the same as the engine's (tied weights and later backwards accumulate into it
    /// as usual; TorchSharp has no tensor gradient hooks to bypass). Set false when calling torch.autograd.grad or
    /// backward with explicit inputs: those do not expect W.grad to change, and would not receive dW from this loss.</summary>
    public bool WeightGradToLeaf { get; init; } = true;

    internal void Validate()
    {
        if (!(LabelSmoothing >= 0 && LabelSmoothing <= 1)) throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, "must be in [0, 1]");
        if (!(Softcap >= 0) || double.IsInfinity(Softcap)) throw new ArgumentOutOfRangeException(nameof(Softcap), Softcap, "must be finite and >= 0 (0 = off)");
        if (!(LogitScale > 0) || double.IsInfinity(LogitScale)) throw new ArgumentOutOfRangeException(nameof(LogitScale), LogitScale, "must be finite and > 0");
        if (!(ZLoss >= 0) || double.IsInfinity(ZLoss)) throw new ArgumentOutOfRangeException(nameof(ZLoss), ZLoss, "must be finite and >= 0");
        LossShapes.CheckNormalizer(Reduction, Normalizer);
    }
}
