using SlothSharp.Losses;
using SlothSharp.References;
using static TorchSharp.torch;

namespace SlothSharp.Bench;

/// <summary>One LM-head loss workload (bf16 on CUDA) and the ways to compute forward + backward on it.</summary>
internal sealed class LossProblem : IDisposable
{
    /// <summary>CUDA, or the CPU for a smoke test of the suites' code (SLOTH_BENCH_DEVICE=cpu; timings meaningless).</summary>
    public static readonly Device Dev = Environment.GetEnvironmentVariable("SLOTH_BENCH_DEVICE") == "cpu" ? CPU : CUDA;

    /// <summary>Waits for the device (nothing to wait for on the CPU).</summary>
    public static void Sync()
    {
        if (Dev.type == TorchSharp.DeviceType.CUDA) CudaDevice.Synchronize();
    }

    public static readonly string[] CeShapes = ["4096x4096x128256", "16384x4096x128256", "8192x2304x256000"];
    public const string GrpoShape = "8x2048x4096x128256";

    public Tensor X = null!, W = null!, Y = null!, Mask = null!, Adv = null!, Old = null!, Ref = null!;
    public long N, H, V;
    public bool Grpo;

    /// <summary>shape: "NxHxV" (cross-entropy) or "BxTxHxV" (GRPO), optionally followed by ":fp16" (float16 X and W
    /// instead of bfloat16) and ":ignore7" (every 7th label is ignore_index -100), e.g. "16384x4096x128256:ignore7".</summary>
    public static LossProblem Create(string shape, bool tiny = false)
    {
        var parts = shape.Split(':');
        var d = parts[0].Split('x').Select(long.Parse).ToArray();
        var dtype = parts.Contains("fp16") ? ScalarType.Float16 : ScalarType.BFloat16;
        if (parts.Skip(1).FirstOrDefault(q => q is not ("fp16" or "ignore7")) is { } unknown)
            throw new ArgumentException($"unknown shape option ':{unknown}' in '{shape}' (fp16, ignore7)", nameof(shape));
        if (tiny) d = d.Length == 4 ? [2, 16, d[2], 512] : [32, d[1], 512];
        var p = new LossProblem { Grpo = d.Length == 4 };
        cuda.manual_seed(1);
        if (p.Grpo)
        {
            var (b, t) = (d[0], d[1]);
            (p.N, p.H, p.V) = (b * t, d[2], d[3]);
            p.X = randn([b, t, p.H], ScalarType.BFloat16, Dev).requires_grad_();
            p.Y = randint(0, p.V, [b, t], device: Dev);
            p.Mask = rand([b, t], device: Dev).lt(0.9);
            p.Adv = randn([b], device: Dev);
            p.Old = randn([b, t], device: Dev) * 0.05 - 11.5;
            p.Ref = randn([b, t], device: Dev) * 0.05 - 11.5;
        }
        else
        {
            (p.N, p.H, p.V) = (d[0], d[1], d[2]);
            // NOTES.md recipe: x ~ N(0, 0.25), W ~ N(0, 0.02²), rounded to bf16 (or fp16); all labels valid unless
            // :ignore7.
            p.X = (randn([p.N, p.H], ScalarType.Float32, Dev) * 0.5).to(dtype).requires_grad_();
            p.Y = randint(0, p.V, [p.N], device: Dev);
            if (parts.Contains("ignore7")) p.Y.index_fill_(0, arange(0, p.N, 7, device: Dev), -100);
        }
        p.W = p.Grpo
            ? (randn([p.V, p.H], ScalarType.BFloat16, Dev) * (1.0 / Math.Sqrt(p.H))).requires_grad_()
            : (randn([p.V, p.H], ScalarType.Float32, Dev) * 0.02).to(dtype).requires_grad_();
        Sync();
        return p;
    }

    public static string[] Methods(bool grpo) => grpo ? ["naive", "fused", "chunked"] : ["naive", "chunked", "fused", "fused-512MiB"];

    /// <summary>With true, <see cref="Step"/> sets X.grad and W.grad to null first (as PyTorch's zero_grad does by
    /// default and as the Python anchors measure), so the function's own gradients become .grad.</summary>
    public bool ClearGrads { get; set; }

    /// <summary>Forward + backward once; gradients accumulate into X.grad and W.grad (allocated on the first run),
    /// unless <see cref="ClearGrads"/>. Returns the loss tensor's value only when <paramref name="readLoss"/> (a sync).</summary>
    public float Step(string method, bool readLoss = false)
    {
        var (unit, handOff) = (FusedCrossEntropyTuning.SkipUnitUpstreamScale, FusedCrossEntropyTuning.HandWeightGradToLeaf);
        var parts = method.Split('-');
        // Both are the library's defaults now; a variant turns one off by name (the environment's value otherwise).
        FusedCrossEntropyTuning.SkipUnitUpstreamScale = (unit || parts.Contains("unit")) && !parts.Contains("nounit");
        FusedCrossEntropyTuning.HandWeightGradToLeaf = (handOff || parts.Contains("handoff")) && !parts.Contains("nohandoff");
        var threads = FusedCrossEntropyTuning.KernelThreadsPerRow;
        var (tunedGemm, budget) = (FusedCrossEntropyTuning.UseTunedGemm, FusedCrossEntropyTuning.ChunkBudgetBytes);
        var inFlight = FusedCrossEntropyTuning.KernelRowsInFlight;
        foreach (var part in parts)
        {
            if (part.Length > 1 && part[0] == 't' && int.TryParse(part[1..], out var t)) FusedCrossEntropyTuning.KernelThreadsPerRow = t;
            if (part.StartsWith("budget", StringComparison.Ordinal) && long.TryParse(part[6..], out var mib)) FusedCrossEntropyTuning.ChunkBudgetBytes = mib << 20;
            if (part.Length > 1 && part[0] == 'g' && long.TryParse(part[1..], out var g)) FusedCrossEntropyTuning.KernelRowsInFlight = g;
        }
        FusedCrossEntropyTuning.UseTunedGemm = tunedGemm && !parts.Contains("torchgemm");
        try { return StepCore(method, readLoss); }
        finally
        {
            (FusedCrossEntropyTuning.SkipUnitUpstreamScale, FusedCrossEntropyTuning.HandWeightGradToLeaf) = (unit, handOff);
            FusedCrossEntropyTuning.KernelThreadsPerRow = threads;
            (FusedCrossEntropyTuning.UseTunedGemm, FusedCrossEntropyTuning.ChunkBudgetBytes) = (tunedGemm, budget);
            FusedCrossEntropyTuning.KernelRowsInFlight = inFlight;
        }
    }

    private float StepCore(string method, bool readLoss)
    {
        using var scope = NewDisposeScope();
        if (ClearGrads)
        {
            X.grad = null;
            W.grad = null;
        }
        Tensor loss;
        if (Grpo)
        {
            var o = new GrpoOptions { Beta = 0.04, EpsilonHigh = 0.28, UseFusedKernel = method.StartsWith("fused", StringComparison.Ordinal) };
            loss = method == "naive" ? GrpoReference.Loss(X, W, Y, Mask, Adv, Old, Ref, o) : GrpoLoss.Compute(X, W, null, Y, Mask, Adv, Old, Ref, o).Loss;
        }
        else
        {
            loss = method switch
            {
                // What a TorchSharp user writes today: bf16 logits, float32 upcast, cross_entropy.
                "naive" => nn.functional.cross_entropy(X.matmul(W.t()).to(ScalarType.Float32), Y),
                "chunked" => ChunkedLinearLoss.CrossEntropy(X, W, null, Y),
                "fused" => FusedLinearCrossEntropy.Apply(X, W, null, Y, BenchSetup.LossOptions),
                // The chunk size the library used before (512 MiB): faster, more transient memory.
                "fused-512MiB" => FusedLinearCrossEntropy.Apply(X, W, null, Y, BenchSetup.LossOptions with { ChunkBytes = 512L << 20 }),
                // Reduction.None (TokenLogProbs' path: gradients recomputed in backward), averaged over the kept rows.
                _ when method.StartsWith("fused-", StringComparison.Ordinal) && method.Split('-').Contains("none") =>
                    FusedLinearCrossEntropy.Apply(X, W, null, Y, FusedVariant(method) with { Reduction = LossReduction.None }).sum()
                        .div(Y.ne(-100).sum()),
                _ when method.StartsWith("fused-", StringComparison.Ordinal) => FusedLinearCrossEntropy.Apply(X, W, null, Y, FusedVariant(method)),
                _ => throw new ArgumentException($"unknown loss method '{method}'", nameof(method)),
            };
        }
        loss.backward();
        return readLoss ? loss.to(ScalarType.Float32).item<float>() : float.NaN;
    }

    /// <summary>Options of a fused variant named like <c>fused-r2048-fp32dw</c>: <c>r{rows}</c> rows per chunk,
    /// <c>b{MiB}</c> a float32-equivalent chunk budget (equal chunks), <c>budget{MiB}</c> the default plan's budget in
    /// the input dtype (even chunks), <c>torchgemm</c> TorchSharp's matmul instead of the tuned cuBLASLt GEMM,
    /// <c>untuned</c> cuBLASLt's first heuristic choice, <c>wide</c> the tuner's wide search, <c>none</c> Reduction.None averaged over the kept rows (the
    /// TokenLogProbs path), <c>g{blocks}</c> the CE kernel's rows in flight, <c>t{threads}</c> the CE kernel's threads per row (256, 512, 1024), <c>fp32dw</c> float32 dW accumulation; <c>nounit</c> / <c>nohandoff</c>
    /// turn off the library's defaults (skip the backward scaling pass when the upstream gradient is 1; dW becomes
    /// W.grad without a copy when W.grad is unset; see FusedCrossEntropyTuning), <c>unit</c> / <c>handoff</c> are
    /// accepted (phase-1 names, now the defaults); <c>profile</c> times each piece (the ce-sweep suite sets it up).</summary>
    public static CrossEntropyOptions FusedVariant(string method)
    {
        var o = BenchSetup.LossOptions;
        foreach (var part in method.Split('-').Skip(1))
        {
            if (part == "fp32dw") o = o with { AccumulateWeightGradInFloat32 = true };
            else if (part == "untuned") o = o with { GemmTuning = SlothSharp.Ops.GemmTuning.None };
            else if (part == "wide") o = o with { GemmTuning = SlothSharp.Ops.GemmTuning.Wide };
            else if (part is "unit" or "handoff" or "nounit" or "nohandoff" or "profile" or "torchgemm" or "none"
                     || (part.Length > 1 && part[0] == 'g' && long.TryParse(part[1..], out _))
                     || part.StartsWith("budget", StringComparison.Ordinal)) { }  // FusedCrossEntropyTuning switches, set around the step
            else if (part.Length > 1 && part[0] == 'r' && int.TryParse(part[1..], out var rows)) o = o with { ChunkRows = rows };
            else if (part.Length > 1 && part[0] == 'b' && long.TryParse(part[1..], out var mib)) o = o with { ChunkBytes = mib << 20 };
            else if (part.Length > 1 && part[0] == 't' && int.TryParse(part[1..], out _)) { }  // CE kernel threads per row, set around the step
            else throw new ArgumentException($"unknown part '{part}' of fused variant '{method}' (r<rows>, b<MiB>, budget<MiB>, t<threads>, g<blocks>, fp32dw, nounit, nohandoff, torchgemm, untuned, wide, none, profile)", nameof(method));
        }
        return o;
    }

    public long InputBytes => Bytes(X) + Bytes(W) + Bytes(Y) + (Grpo ? Bytes(Mask) + Bytes(Adv) + Bytes(Old) + Bytes(Ref) : 0);
    public long GradBytes => (X.grad is null ? 0 : Bytes(X.grad)) + (W.grad is null ? 0 : Bytes(W.grad));
    public double Flops => 6.0 * N * H * V;
    private static long Bytes(Tensor t) => t.numel() * t.element_size();

    public void Dispose()
    {
        foreach (var t in new[] { X, W, Y, Mask, Adv, Old, Ref }) t?.Dispose();
    }
}
