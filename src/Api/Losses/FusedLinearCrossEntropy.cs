using SlothSharp.Autograd;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>
/// Cross-entropy of an LM head without ever holding the N × V logits: for each row chunk, logits = Xc·Wᵀ (+b)
/// (on CUDA in f16/bf16 the tuned cuBLASLt GEMM of <see cref="Ops.TunedGemm"/>, else TorchSharp's), the fused kernel turns them into per-row losses and overwrites them in place
/// with dLoss/dlogits, then dXc = G·W and dW += Gᵀ·Xc. With Mean/Sum the gradients are computed during forward
/// (backward only scales them by the upstream scalar); with None they are recomputed in backward with the per-row
/// upstream gradient. Rows with ignore_index are dropped before any GEMM. CPU and CUDA; float32/float16/bfloat16.
/// Transient memory: one logits chunk (rows × V in the input dtype) plus the gradients themselves.
/// </summary>
public static class FusedLinearCrossEntropy
{
    /// <summary>
    /// hidden: [N, H] or [B, T, H]; weight: [V, H] (same dtype/device); bias: [V] or null; labels: int64 [N] or [B, T].
    /// Returns a float32 scalar (Mean, Sum) or float32 per-row losses shaped like labels (None).
    /// Throws <see cref="ArgumentOutOfRangeException"/> for a label outside [0, V) that is not ignore_index.
    /// </summary>
    public static Tensor Apply(Tensor hidden, Tensor weight, Tensor? bias, Tensor labels, CrossEntropyOptions? options = null)
    {
        options ??= new CrossEntropyOptions();
        options.Validate();
        var (n, h, v) = LossShapes.Check(hidden, weight, bias, labels, targetsAreLabels: true);
        LossShapes.CheckLabelRange(labels, v, options.IgnoreIndex);
        // Chunks: decided in Forward from the kept rows (ChunkOptions.FusedChunkRows).
        var plan = new Plan(options, labels.shape, hidden.requires_grad, weight.requires_grad, bias?.requires_grad ?? false);
        return FusedLinearCrossEntropyFunction.Apply(plan, new HeadInputs(hidden.reshape(n, h), weight, bias, labels.reshape(n)).ToArray());
    }

    /// <summary>
    /// Per-token log-probabilities log softmax(z)[y] with z = (h·Wᵀ + b) / temperature (then the optional softcap),
    /// float32 shaped like tokens, differentiable with a per-token upstream gradient (RL: GRPO, PPO). Tokens equal to
    /// ignoreIndex get 0 and no GEMM work.
    /// </summary>
    public static Tensor TokenLogProbs(Tensor hidden, Tensor weight, Tensor? bias, Tensor tokens, double temperature = 1.0,
                                       double softcap = 0, long ignoreIndex = -100, ChunkOptions? chunking = null)
    {
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "must be > 0");
        var nll = Apply(hidden, weight, bias, tokens, new CrossEntropyOptions
        {
            Reduction = LossReduction.None, LogitScale = 1.0 / temperature, Softcap = softcap, IgnoreIndex = ignoreIndex,
            ChunkRows = chunking?.ChunkRows, ChunkBytes = chunking?.ChunkBytes,
        });
        return nll.neg();
    }

    internal sealed record Plan(CrossEntropyOptions Options, long[] LabelShape, bool NeedX, bool NeedW, bool NeedB);
}

/// <summary>Switches of the fused loss that the benchmark flips in one process (issue 15); not public API. Both are on
/// by default (measured on the H100, round 3); the environment can turn them off (value "0").</summary>
internal static class FusedCrossEntropyTuning
{
    /// <summary>Mean/Sum: read the upstream gradient on the host in backward and skip the dX/dW scaling pass (a read
    /// and write of dW: ~0.7 ms at 128256 × 4096 bf16) when it is exactly 1, which is what loss.backward() passes.
    /// Costs one host sync in backward, when the forward's work has been queued anyway.
    /// (The benchmark's SLOTHSHARP_CE_SKIP_UNIT_UPSTREAM=0 turns it off.)</summary>
    public static bool SkipUnitUpstreamScale { get; set; } = true;

    /// <summary>The hand-off of dW to W.grad (see <see cref="CrossEntropyOptions.WeightGradToLeaf"/>), on when both this
    /// and the option are. (The benchmark's SLOTHSHARP_CE_HAND_OFF_DW=0 turns it off.)</summary>
    public static bool HandWeightGradToLeaf { get; set; } = true;

    /// <summary>CUDA threads per row of the CE kernel: 0 = the library's choice (1024 from V = 32768 on), or 256, 512,
    /// 1024 (the benchmark compares them; see sloth_cross_entropy_chunk_tuned).</summary>
    public static int KernelThreadsPerRow { get; set; }

    /// <summary>CUDA blocks of the CE kernel: 0 = one per row (the library's choice), else at most this many, each
    /// looping over rows (sloth_cross_entropy_chunk_tuned's rows_in_flight; the benchmark compares them).</summary>
    public static long KernelRowsInFlight { get; set; }

    /// <summary>Run the chunk GEMMs through <see cref="Ops.TunedGemm"/> (cuBLASLt) on CUDA f16/bf16; off: TorchSharp's
    /// matmul (the benchmark's A/B: its SLOTHSHARP_CE_GEMM=torch). How a shape is tuned is
    /// <see cref="CrossEntropyOptions.GemmTuning"/>.</summary>
    public static bool UseTunedGemm { get; set; } = true;

    /// <summary>The default chunk budget in bytes when set (the benchmark compares budgets); null:
    /// <see cref="ChunkOptions.FusedDefaultChunkBytes"/>.</summary>
    public static long? ChunkBudgetBytes { get; set; }

    /// <summary>How many backwards handed dW to W.grad (tests check that the hand-off happens).</summary>
    public static long HandOffs => Interlocked.Read(ref _handOffs);
    internal static long _handOffs;

    /// <summary>The benchmark's profiler: when set, every piece of forward and backward is synchronized and timed
    /// (slower; for finding where time goes, never for the reported times).</summary>
    public static CrossEntropyProfile? Profile { get; set; }
}

/// <summary>Milliseconds per piece of the fused loss (summed over calls), each piece bracketed by device
/// synchronizations. Single-threaded use (the benchmark).</summary>
internal sealed class CrossEntropyProfile
{
    private readonly System.Diagnostics.Stopwatch _clock = new();
    public Dictionary<string, double> Ms { get; } = new();
    public Dictionary<string, long> Calls { get; } = new();

    private static void Sync(Tensor like)
    {
        if (like.device_type == DeviceType.CUDA) SlothSharp.CudaDevice.Synchronize(like.device_index < 0 ? 0 : like.device_index);
    }

    /// <summary>Waits for the device and starts timing the next piece.</summary>
    public void Start(Tensor like)
    {
        Sync(like);
        _clock.Restart();
    }

    /// <summary>Waits for the device and books the time since the last mark to <paramref name="piece"/>.</summary>
    public void Lap(string piece, Tensor like)
    {
        Sync(like);
        Ms[piece] = Ms.GetValueOrDefault(piece) + _clock.Elapsed.TotalMilliseconds;
        Calls[piece] = Calls.GetValueOrDefault(piece) + 1;
        _clock.Restart();
    }
}

internal sealed class FusedLinearCrossEntropyFunction : SlothFunction<FusedLinearCrossEntropyFunction, FusedLinearCrossEntropy.Plan>
{
    public override string Name => "SlothSharp.FusedLinearCrossEntropy";

    /// <summary>inputs: x [N, H], w [V, H], b [V] or null, y int64 [N].</summary>
    protected override Tensor Forward(autograd.AutogradContext ctx, FusedLinearCrossEntropy.Plan plan, Tensor?[] inputs)
    {
        var (x, w, b, y) = HeadInputs.Of(inputs);
        var o = plan.Options;
        var needGrad = plan.NeedX || plan.NeedW || plan.NeedB;
        var precompute = needGrad && o.Reduction != LossReduction.None;

        using var scope = NewDisposeScope();
        var prof = FusedCrossEntropyTuning.Profile;
        prof?.Start(x);
        // Drop ignored rows before any GEMM (one host read for the count).
        var rows = IgnoredRows.Of(y, o.IgnoreIndex);
        var xv = rows.Select(x);
        var yv = rows.Select(y);
        prof?.Lap("fwd: ignored rows (count, select)", x);
        var normalizer = o.Reduction == LossReduction.Mean ? o.Normalizer ?? rows.Kept : 1.0;
        var gradScale = (float)(o.Reduction == LossReduction.Mean ? (normalizer == 0 ? 0 : 1.0 / normalizer) : 1.0);

        var grads = precompute ? Grads.Allocate(xv, w, plan, o) : null;
        prof?.Lap("fwd: allocate dX, dW", x);
        var lossRows = Run(xv, w, b, yv, plan, rowScale: null, gradScale, grads);

        Tensor result;
        if (o.Reduction == LossReduction.None) result = rows.Scatter(lossRows).reshape(plan.LabelShape);
        else
        {
            var total = lossRows.sum();
            result = o.Reduction == LossReduction.Mean ? total / Math.Max(normalizer, 1e-30) : total;
        }
        prof?.Lap("fwd: loss reduction", x);

        if (precompute)
        {
            var (dxv, dw, db) = grads!.Finish(w);
            var dx = dxv is null ? null : rows.Scatter(dxv, x);
            ctx.save_data("grads", new TensorBox(dx?.DetachFromDisposeScope(), dw?.DetachFromDisposeScope(), db?.DetachFromDisposeScope()));
            // The hand-off needs W itself in backward (saving an input copies nothing).
            if (HandOffAllowed(o) && dw is not null && w.is_leaf && w.requires_grad)
                ctx.save_for_backward([w]);
        }
        else if (needGrad)
        {
            new HeadInputs(x, w, b, y).SaveForBackward(ctx);
        }
        prof?.Lap("fwd: finish (dX scatter, save)", x);
        return result.MoveToOuterDisposeScope();
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, FusedLinearCrossEntropy.Plan plan, Tensor gradOutput)
    {
        if (ctx.get_data("grads") is TensorBox box)
        {
            // Mean/Sum: gradients exist already; the upstream gradient is a scalar.
            var t = box.Take();
            var prof = FusedCrossEntropyTuning.Profile;
            prof?.Start(gradOutput);
            using var g = gradOutput.to(ScalarType.Float32);
            // Scaling by the upstream scalar is a full read + write of dW and dX. Skipping it when the scalar is 1 (what
            // loss.backward() passes) needs its value on the host: one sync, after the forward's work was queued.
            // Only worth it when dW exists (a full V × H pass saved): the host read is a sync that stalls the CPU's
            // queue-ahead of the rest of backward, which costs more than scaling dX alone (the QLoRA step, with a frozen
            // LM head, measured ~8% slower with the read). The read runs in its own dispose scope: on CUDA, backward
            // runs on the autograd engine's thread, which has no scope, and a host read of a device scalar makes a
            // temporary host tensor that would otherwise outlive the step (TrainingStepMemoryTests on CUDA saw one).
            var unit = false;
            if (FusedCrossEntropyTuning.SkipUnitUpstreamScale && t[1] is not null && g.numel() == 1)
                using (NewDisposeScope()) unit = g.item<float>() == 1f;
            prof?.Lap("bwd: upstream value (host read)", gradOutput);
            if (!unit)
                foreach (var grad in t) grad?.mul_(g);
            prof?.Lap("bwd: upstream scaling", gradOutput);
            if (t[1] is { } handed && HandToLeaf(ctx, plan.Options, handed))
            {
                handed.Dispose();  // the leaf's .grad holds its own reference now
                prof?.Lap("bwd: hand-off", gradOutput);
                return [t[0], null, t[2], null];
            }
            return [t[0], t[1], t[2], null];
        }
        using var saved = SavedTensors.Of(ctx);
        var (x, w, b, y) = HeadInputs.Of(saved);
        using var scope = NewDisposeScope();
        var rows = IgnoredRows.Of(y, plan.Options.IgnoreIndex);
        var g32 = gradOutput.reshape(-1).to(ScalarType.Float32);
        var xv = rows.Select(x);
        var grads = Grads.Allocate(xv, w, plan, plan.Options);
        Run(xv, w, b, rows.Select(y), plan, rows.Select(g32).contiguous(), 1.0f, grads);
        var (dxv, dw, db) = grads.Finish(w);
        var dx = dxv is null ? null : rows.Scatter(dxv, x);
        // None (TokenLogProbs, GRPO): dW is made here, and the same hand-off saves the engine's copy of it.
        if (dw is not null && HandToLeaf(w, plan.Options, dw))
            return [dx?.MoveToOuterDisposeScope(), null, db?.MoveToOuterDisposeScope(), null];
        return [dx?.MoveToOuterDisposeScope(), dw?.MoveToOuterDisposeScope(), db?.MoveToOuterDisposeScope(), null];
    }

    /// <summary>The hand-off (<see cref="CrossEntropyOptions.WeightGradToLeaf"/>): when W is a leaf that requires grad
    /// and whose .grad is unset, dW becomes W.grad as it is, instead of being returned to the engine, which would copy
    /// it (it copies a returned gradient that .NET still references: a dW-sized transient and a dW-sized copy).
    /// Returns whether it did. (Phase 1 compared devices with <c>!=</c>, which compares the Device objects by
    /// reference, so it never handed off.)</summary>
    private static bool HandToLeaf(autograd.AutogradContext ctx, CrossEntropyOptions o, Tensor dw)
    {
        if (!HandOffAllowed(o)) return false;  // nothing was saved for it: skip unpacking
        using var saved = SavedTensors.Of(ctx);
        return saved.Count == 1 && HandToLeaf(saved[0], o, dw);
    }

    /// <summary>The caller's option and the process-wide switch (benchmarks turn it off) together.</summary>
    private static bool HandOffAllowed(CrossEntropyOptions o) => o.WeightGradToLeaf && FusedCrossEntropyTuning.HandWeightGradToLeaf;

    /// <summary>The hand-off to <paramref name="w"/> (the leaf as saved for backward) under the same conditions.</summary>
    private static bool HandToLeaf(Tensor? w, CrossEntropyOptions o, Tensor dw)
    {
        if (!HandOffAllowed(o)) return false;
        if (w is null || !w.is_leaf || !w.requires_grad) return false;
        using (var existing = w.grad) if (existing is not null) return false;
        if (!w.shape.SequenceEqual(dw.shape) || w.dtype != dw.dtype || w.device_type != dw.device_type
            || w.device_index != dw.device_index) return false;
        w.grad = dw;
        Interlocked.Increment(ref FusedCrossEntropyTuning._handOffs);
        return true;
    }

    /// <summary>Chunk loop: GEMM, kernel (in place), and the gradient GEMMs when <paramref name="grads"/> is given. One
    /// logits buffer, sized for the largest chunk, serves every chunk.</summary>
    private static Tensor Run(Tensor x, Tensor w, Tensor? b, Tensor y, FusedLinearCrossEntropy.Plan plan, Tensor? rowScale,
                              float gradScale, Grads? grads)
    {
        var n = x.shape[0];
        var lossRows = empty(n, ScalarType.Float32, x.device);
        var lse = empty(n, ScalarType.Float32, x.device);
        var wt = w.t();
        var sizes = plan.Options.FusedChunkRows(n, w.shape[0], w.element_size(), FusedCrossEntropyTuning.ChunkBudgetBytes);
        using var buffer = b is null && sizes.Length > 0 ? empty(sizes.Max(), w.shape[0], w.dtype, w.device) : null;
        var prof = FusedCrossEntropyTuning.Profile;
        long s = 0;
        foreach (var r in sizes)
        {
            using var chunk = NewDisposeScope();
            var xc = x.narrow(0, s, r);
            prof?.Start(x);
            Tensor logits;
            if (buffer is null) logits = addmm(b!, xc, wt, 1, 1);
            else MatMulInto(xc, wt, logits = buffer.narrow(0, 0, r), beta: 0, plan.Options.GemmTuning);
            prof?.Lap("chunk: logits GEMM", x);
            CrossEntropyChunk.Compute(logits, y.narrow(0, s, r).contiguous(), plan.Options, rowScale?.narrow(0, s, r),
                gradScale, grads is not null, lossRows.narrow(0, s, r), lse.narrow(0, s, r));
            prof?.Lap("chunk: CE kernel", x);
            grads?.Accumulate(logits, xc, w, s, r, prof);
            s += r;
        }
        prof?.Start(x);
        return lossRows;
    }

    /// <summary><paramref name="c"/> = a·b + beta·c: the tuned cuBLASLt GEMM where it applies (CUDA, f16/bf16), else
    /// TorchSharp's addmm_ (beta = 0 ignores c's contents, NaNs included, on both paths).</summary>
    private static void MatMulInto(Tensor a, Tensor b, Tensor c, float beta, Ops.GemmTuning tuning)
    {
        if (FusedCrossEntropyTuning.UseTunedGemm && Ops.TunedGemm.TryMatMulInto(a, b, c, beta: beta, tuning: tuning)) return;
        c.addmm_(a, b, beta: beta, alpha: 1);
    }

    /// <summary>dX rows, dW and db for the kept rows. dX: each chunk's GEMM writes straight into its rows (beta = 0, no
    /// temporary, no copy). dW: the first chunk's GEMM writes it (beta = 0, so the buffer needs no zero fill; it is also
    /// the call that the GEMM tuner may time), later chunks accumulate in W's dtype through GEMM with beta = 1, or in
    /// float32 when asked.</summary>
    private sealed class Grads
    {
        private Tensor? _dx, _dw, _db;
        private bool _fp32, _dwWritten;
        private Ops.GemmTuning _tuning;

        public static Grads Allocate(Tensor xv, Tensor w, FusedLinearCrossEntropy.Plan plan, CrossEntropyOptions o)
        {
            var g = new Grads { _fp32 = o.AccumulateWeightGradInFloat32 && w.dtype != ScalarType.Float32, _tuning = o.GemmTuning };
            if (plan.NeedX) g._dx = empty_like(xv);
            if (plan.NeedW) g._dw = g._fp32 ? empty(w.shape, ScalarType.Float32, w.device) : empty_like(w);
            if (plan.NeedB) g._db = zeros(w.shape[0], ScalarType.Float32, w.device);
            return g;
        }

        public void Accumulate(Tensor gradLogits, Tensor xc, Tensor w, long start, long rows, CrossEntropyProfile? prof)
        {
            // addmm_ with beta = 0 ignores the (uninitialized) destination, NaNs included.
            if (_dx is not null) MatMulInto(gradLogits, w, _dx.narrow(0, start, rows), beta: 0, _tuning);
            prof?.Lap("chunk: dX GEMM", xc);
            if (_dw is not null)
            {
                if (_fp32)
                {
                    using var part = gradLogits.t().mm(xc);
                    if (_dwWritten) _dw.add_(part);
                    else _dw.copy_(part);
                }
                else MatMulInto(gradLogits.t(), xc, _dw, beta: _dwWritten ? 1 : 0, _tuning);
                _dwWritten = true;
            }
            prof?.Lap("chunk: dW GEMM", xc);
            _db?.add_(gradLogits.sum(dim: 0, type: ScalarType.Float32));
        }

        public (Tensor? dx, Tensor? dw, Tensor? db) Finish(Tensor w)
        {
            if (_dw is not null && !_dwWritten) _dw.zero_();  // no kept rows: no chunk ran
            return (_dx, _dw is null ? null : _fp32 ? _dw.to(w.dtype) : _dw, _db?.to(w.dtype));
        }
    }
}
