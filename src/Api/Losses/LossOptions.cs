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

    /// <summary>The fused loss's default chunk budget: 472 MiB (0.495 GB) of logits in the input dtype. The chunk is the
    /// fused loss's only transient besides the gradients, so this bounds its memory under the 0.5 GB target of issue 15
    /// (cuBLAS/cuBLASLt workspaces are per process, not per call). The loop's time falls with larger chunks (fewer
    /// read-modify-writes of dW, fewer reads of W: bench/results, round 3), so the budget is as large as that target
    /// allows. bf16 gives at most 1920 rows at V = 128256 and 960 at V = 256000 (see <see cref="FusedChunkRows"/>).</summary>
    public const long FusedDefaultChunkBytes = 472L << 20;

    /// <summary>The fused loss's default chunks hold multiples of this many rows (of <see cref="RowQuantum"/> when that
    /// needs no more chunks): GEMM tiles are 64 or 128 rows tall, so other counts leave a tile partly empty.</summary>
    public const long FusedRowQuantum = RowQuantum / 2;

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

    /// <summary>Row counts of the fused loss's chunks, in order, for <paramref name="rows"/> kept rows, a vocabulary of
    /// <paramref name="vocab"/> and logits of <paramref name="elementSize"/> bytes. Explicit <see cref="ChunkRows"/> or
    /// <see cref="ChunkBytes"/> (float32-equivalent, as for the chunked loss) give equal chunks and a shorter last one.
    /// Otherwise: the fewest chunks whose logits fit <paramref name="budgetBytes"/> (default
    /// <see cref="FusedDefaultChunkBytes"/>), with the rows spread evenly in multiples of <see cref="RowQuantum"/>
    /// (else of the quantum) so that no chunk is a short tail: a tail still costs a full pass over W and a full
    /// read-modify-write of dW. 16384 rows at V = 128256: 7 × 1792 + 2 × 1920 (not 8 × 1920 + 1024); 8192 rows at
    /// V = 256000: 7 × 896 + 2 × 960. The more common size comes first: its dW GEMM (the first, with beta = 0) is the
    /// one the GEMM tuner times (<see cref="Ops.TunedGemm"/>).</summary>
    internal long[] FusedChunkRows(long rows, long vocab, long elementSize, long? budgetBytes = null)
    {
        if (rows <= 0) return [];
        if (ChunkRows is not null || ChunkBytes is not null) return EqualChunks(rows, RowsPerChunk(vocab));
        var budget = Math.Max(1, budgetBytes ?? FusedDefaultChunkBytes);
        var maxRows = Math.Max(FusedRowQuantum, budget / (Math.Max(1, vocab) * Math.Max(1, elementSize)) / FusedRowQuantum * FusedRowQuantum);
        if (rows <= maxRows) return [rows];
        var chunks = (rows + maxRows - 1) / maxRows;
        foreach (var q in new[] { RowQuantum, FusedRowQuantum })
        {
            var quanta = (rows + q - 1) / q;
            var (small, extra) = (quanta / chunks, quanta % chunks);
            if (small == 0 || (small + (extra > 0 ? 1 : 0)) * q > maxRows) continue;
            var sizes = new List<long>();
            var (first, firstCount, second, secondCount) = extra > chunks - extra
                ? ((small + 1) * q, extra, small * q, chunks - extra)
                : (small * q, chunks - extra, (small + 1) * q, extra);
            for (var i = 0; i < firstCount; i++) sizes.Add(first);
            for (var i = 0; i < secondCount; i++) sizes.Add(second);
            sizes[^1] -= quanta * q - rows;  // the rows do not fill the last quantum
            return [.. sizes];
        }
        return EqualChunks(rows, maxRows);
    }

    private static long[] EqualChunks(long rows, long per)
    {
        var sizes = new long[(rows + per - 1) / per];
        for (var i = 0; i < sizes.Length; i++) sizes[i] = Math.Min(per, rows - i * per);
        return sizes;
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

    /// <summary>The fused loss's chunk GEMMs on CUDA in f16/bf16 (cuBLASLt), when a shape comes back:
    /// <see cref="Ops.GemmTuning.Heuristic"/> (the default) times cuBLASLt's heuristic candidates on the shape's second
    /// call (one host sync, about 0.1 s, once per shape and process) and keeps the fastest; <see cref="Ops.GemmTuning.Wide"/>
    /// also times their variants (about a second a shape); <see cref="Ops.GemmTuning.None"/> takes cuBLASLt's first choice
    /// and never times (a profiler's window without the candidates). Ignored on the CPU and in float32.</summary>
    public Ops.GemmTuning GemmTuning { get; init; } = Ops.GemmTuning.Heuristic;

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
        if (!Enum.IsDefined(GemmTuning)) throw new ArgumentOutOfRangeException(nameof(GemmTuning), GemmTuning, "not a GemmTuning value");
        LossShapes.CheckNormalizer(Reduction, Normalizer);
    }
}
