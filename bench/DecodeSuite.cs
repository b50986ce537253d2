using System.Diagnostics;
using System.Globalization;
using System.Text;
using SlothSharp.Inference;
using SlothSharp.Interop;
using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Bench;

/// <summary>
/// `--suite decode`: the native decoding engine (<see cref="DecodeEngine"/>) on random NF4 checkpoints of published
/// shapes (llama-3.2-1b, qwen3-1.7b; <c>--tiny</c>: ModelPresets.Tiny on the CPU, a smoke test). Per shape: a 2,048-token
/// prefill through CausalLM.Forward (time), then a 32-token prompt prefilled and 512 greedy decode steps timed at batch 1
/// and 64 (tokens/s), next to the bandwidth bound: bytes of weights one step reads (NF4 packed + block codes, the
/// dense LM head; the KV cache excluded) / 3.35 TB/s (H100 SXM HBM3).
/// </summary>
internal static class DecodeSuite
{
    private const double H100Bandwidth = 3.35e12;

    /// <summary>Options (each optional): --presets a,b  --batches 1,64  --steps N  --prefill N  --fusions None,Norm,AttentionMerge,All
    /// --omit each|Part,Part (DecodeStepParts; each = one class at a time, then All)
    /// --only each|Part,Part (the step with nothing but that class: every other one omitted).</summary>
    public static int Run(string[] args, string results, bool tiny)
    {
        string? Opt(string name) { var i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : null; }
        var onCpu = tiny;
        if (!onCpu && (!cuda.is_available() || !CudaDevice.IsAvailable))
        {
            Console.Error.WriteLine("--suite decode needs a CUDA GPU and a CUDA build of libslothsharp (or --tiny for the CPU smoke test).");
            return 2;
        }
        var device = onCpu ? CPU : CUDA;
        var dtype = onCpu ? ScalarType.Float32 : ScalarType.BFloat16;
        var presets = Opt("--presets")?.Split(',') ?? (tiny ? new[] { "tiny" } : ["llama-3.2-1b", "qwen3-1.7b"]);
        var batches = Opt("--batches")?.Split(',').Select(int.Parse).ToArray() ?? (tiny ? [1, 4] : [1, 64]);
        var steps = Opt("--steps") is { } st ? int.Parse(st) : tiny ? 16 : 512;
        var prefill = Opt("--prefill") is { } pf ? int.Parse(pf) : tiny ? 64 : 2048;
        // Kernel fusion sets timed with programmatic launch: --fusions None,All (names of DecodeFusions); default all four.
        var fusionSets = Opt("--fusions")?.Split(',').Select(Enum.Parse<DecodeFusions>).ToArray()
                         ?? [DecodeFusions.None, DecodeFusions.Norm, DecodeFusions.AttentionMerge, DecodeFusions.All];
        // Diagnostics (CUDA): the step timed again without each kernel class (DecodeEngine.SetOmittedParts, garbage
        // results), programmatic launch on and no fusion; each difference from the real step is that class's share.
        DecodeStepParts[] omitSets = Opt("--omit") is not { } om ? []
            : om == "each" ? Enum.GetValues<DecodeStepParts>().Where(p => p != DecodeStepParts.None).ToArray()
            : om.Split(',').Select(Enum.Parse<DecodeStepParts>).ToArray();
        // --only: each class alone (all others omitted), its launches back to back without the rest of the step
        // around them: the class's own time, free of the overlap with its neighbours that --omit's differences keep.
        // --omit-fusions NAME: the fusions of the --omit / --only rows (default None), e.g. Persistent for the
        // persistent step's phases (their work left out, the grid barriers kept).
        var omitFusions = Opt("--omit-fusions") is { } ofs ? Enum.Parse<DecodeFusions>(ofs) : DecodeFusions.None;
        // --no-plain: without the plain-launch row that follows the fusion sets (a shorter run when only they are compared).
        var noPlain = args.Contains("--no-plain");
        // --dequantized: DecodeEngineOptions.DequantizeWeights (a dense copy of every NF4 projection, for large batches).
        var dequantize = args.Contains("--dequantized");
        // --gemm-tuning None|Heuristic|Wide: DecodeEngineOptions.GemmTuning (past 8 rows; default the library's, None).
        // The tuner's choices are the process's: compare modes in separate processes.
        var gemmTuning = Opt("--gemm-tuning") is { } gt ? Enum.Parse<GemmTuning>(gt) : GemmTuning.None;
        // --gemv tiles,lanes: the NF4 GEMV kernels each fusion row runs with (DecodeEngine.SetTensorCoreGemv: tensor
        // cores, or the lane kernels); default tiles (the engine's default), both for an A/B on one library.
        var gemvKinds = (Opt("--gemv") ?? "tiles").Split(',').Select(k => k switch
        {
            "tiles" => true,
            "lanes" => false,
            _ => throw new ArgumentException($"--gemv: '{k}' is not tiles or lanes"),
        }).ToArray();
        var singles = Enum.GetValues<DecodeStepParts>().Where(p => p is not DecodeStepParts.None and not DecodeStepParts.All).ToArray();
        if (Opt("--only") is { } only)
            omitSets = [.. omitSets, .. (only == "each" ? singles : only.Split(',').Select(Enum.Parse<DecodeStepParts>))
                                         .Select(p => DecodeStepParts.All & ~p)];
        var report = new StringBuilder();
        void Line(string s)
        {
            Console.WriteLine(s);
            report.AppendLine(s);
        }
        Line($"decode suite on {(onCpu ? "the CPU (--tiny, float32)" : $"{CudaDevice.Name(0)} (bfloat16)")}");
        foreach (var name in presets)
        {
            var cfg = ModelPresets.Get(name);
            // Device memory the process holds above its reading before the model exists (cudaMemGetInfo, so the caching
            // allocator's free blocks count too), read after the model is made and after each batch size's run.
            var memory = new StepSuite.MemoryWatch(!onCpu);
            using var model = CausalLM.CreateRandom(cfg, 0, new LoadOptions { Device = device, ComputeDtype = dtype, Quantize = true });
            using var noGrad = no_grad();
            var bytes = WeightBytesPerStep(model);
            var modelGb = memory.Poll() ?? 0;
            Line($"{name}: {cfg}");
            Line(string.Create(CultureInfo.InvariantCulture, $"  weights read per step: {bytes / 1e6:F3} MB -> H100 bound {bytes / H100Bandwidth * 1e3:F3} ms/step"));
            if (!onCpu) Line(string.Create(CultureInfo.InvariantCulture, $"  device memory held after loading: {modelGb:F2} GB above idle"));

            if (prefill > 0)
            {
                // Two warm-up passes at the full length (cuBLAS heuristics, the caching allocator), then the median of
                // five timed passes.
                using var cache = model.NewKvCache(1, prefill + 1);
                var ids = randint(0, cfg.VocabSize, [1, prefill], ScalarType.Int64, device);
                var times = new List<double>();
                for (var run = 0; run < 7; run++)
                {
                    cache.Reset();
                    Sync(onCpu);
                    var sw = Stopwatch.StartNew();
                    using (var h = model.Forward(ids, null, cache)) model.Logits(h.narrow(1, prefill - 1, 1)).Dispose();
                    Sync(onCpu);
                    if (run >= 2) times.Add(sw.Elapsed.TotalMilliseconds);
                }
                times.Sort();
                Line(string.Create(CultureInfo.InvariantCulture,
                    $"  prefill {prefill} tokens (CausalLM.Forward into the cache, batch 1): median {times[2]:F1} ms, best {times[0]:F1} ms of 5 ({prefill / times[2] * 1e3:F0} tokens/s)"));
            }

            foreach (var b in batches)
            {
                // On CUDA each batch size is timed in several configurations on the same engine, weights and cache:
                // programmatic dependent launch on (where supported) with each set of kernel fusions, then plain
                // launches without fusion (DecodeEngine.SetProgrammaticLaunch / SetFusions re-capture the graph).
                // Each starts from the same prompt in a reset cache, so all attend over the same lengths.
                const int prompt = 32, warm = 3;
                using var cache = model.NewKvCache(b, prompt + warm + steps + 1);
                using var engine = DecodeEngine.TryCreate(model, cache, out var whyNot, new DecodeEngineOptions(DequantizeWeights: dequantize, GemmTuning: gemmTuning));
                if (engine is null)
                {
                    Line($"  batch {b}: the engine refused this model: {whyNot}");
                    continue;
                }
                // Seeded and drawn on the CPU, so two runs (two libraries) decode the same prompts and their digests can
                // be compared. (Until round 26 they were drawn on the device after manual_seed, which seeds the CPU
                // generator only: each process decoded other prompts, and digests of two processes never matched.)
                using var promptGen = new Generator(1234);
                var ids = randint(0, cfg.VocabSize, [b, prompt], ScalarType.Int64, CPU, generator: promptGen).to(device);
                var pdlHere = engine.ProgrammaticLaunch;  // the default: on where supported
                (bool Pdl, DecodeFusions Fusions, DecodeStepParts Omit, bool Tiles)[] modes = onCpu
                    ? [(false, DecodeFusions.None, DecodeStepParts.None, false), .. omitSets.Select(o => (false, DecodeFusions.None, o, false))]
                    : [.. gemvKinds.SelectMany(t => fusionSets.Select(f => (pdlHere, f, DecodeStepParts.None, t))),
                       .. pdlHere && !noPlain ? new[] { (false, DecodeFusions.None, DecodeStepParts.None, gemvKinds[0]) } : [],
                       .. gemvKinds.SelectMany(t => omitSets.Select(o => (pdlHere, omitFusions, o, t)))];
                foreach (var (pdl, fusions, omit, tiles) in modes)
                {
                    var tilesOn = engine.SetTensorCoreGemv(tiles);
                    var on = engine.SetProgrammaticLaunch(pdl);
                    engine.SetFusions(fusions);
                    engine.SetOmittedParts(omit);
                    cache.Reset();
                    // Only the last position's logits (as the generators do): [b, prompt, vocab] would be ~1 GB at batch 64.
                    var next = model.Logits(model.Forward(ids, null, cache).select(1, prompt - 1)).argmax(-1);
                    for (var s = 0; s < warm; s++) next = engine.Step(next, full([b], (long)cache.Length, ScalarType.Int64, device)).argmax(-1);
                    Sync(onCpu);
                    var sw = Stopwatch.StartNew();
                    Tensor? lastLogits = null;
                    for (var s = 0; s < steps; s++)
                    {
                        using var scope = NewDisposeScope();
                        var logits = engine.Step(next, full([b], (long)cache.Length, ScalarType.Int64, device));
                        next = logits.argmax(-1).MoveToOuterDisposeScope();
                        if (s == steps - 1) lastLogits = logits.MoveToOuterDisposeScope();
                    }
                    Sync(onCpu);
                    var sec = sw.Elapsed.TotalSeconds;
                    // The last step's logits summed in float64, and its first tokens: equal digests from two libraries
                    // mean (all but certainly) the same bits at every step, since any difference in any step's
                    // arithmetic changes the cache and so every later step's logits.
                    string digest;
                    using (NewDisposeScope())  // the float64 copy of [b, vocab] logits and the ids' host copy
                        digest = lastLogits is null ? "none" : string.Create(CultureInfo.InvariantCulture,
                            $"{lastLogits.to(ScalarType.Float64).sum().item<double>():R} [{string.Join(' ', next.cpu().data<long>().Take(6))}]");
                    lastLogits?.Dispose();
                    var bound = b / (bytes / H100Bandwidth);
                    var mode = (onCpu ? "" : $"{(on ? ", programmatic launch" : ", plain launch")}{(tilesOn ? ", tensor-core GEMV" : ", lane GEMV")}, fusions {fusions}") + OmitLabel(omit);
                    Line(string.Create(CultureInfo.InvariantCulture,
                        $"  batch {b}{mode}: {steps} steps in {sec * 1e3:F1} ms: {sec / steps * 1e3:F3} ms/step, {b * steps / sec:F0} tokens/s (H100 weight-bandwidth bound {bound:F0} tokens/s), {engine.KernelLaunches} launches/step, graph captures {engine.GraphCaptures}, digest {digest}"));
                }
                engine.SetOmittedParts(DecodeStepParts.None);
                if (!onCpu)
                {
                    // The KV cache's own size: keys and values of every layer, [batch, kv heads, max length, head dim].
                    var cacheGb = 2.0 * cfg.NumHiddenLayers * b * cfg.NumKeyValueHeads * cache.MaxLength * cfg.HeadDim * 2 / 1e9;
                    Line(string.Create(CultureInfo.InvariantCulture,
                        $"  batch {b}: device memory held {memory.Poll() ?? 0:F2} GB above idle (model {modelGb:F2} GB, this KV cache {cacheGb:F3} GB, the engine's own buffers {engine.OwnedBytes / 1e9:F3} GB; the rest is the caching allocator's blocks freed by the prompt's forward)"));
                }
            }
        }
        if (!onCpu)
        {
            Line($"GEMM tuning ({gemmTuning}): what the tuner chose per cuBLASLt shape");
            try { Line(TunedGemm.TuningReport()); }
            catch (SlothException e) { Line($"  (no report: {e.Message})"); }
        }
        File.WriteAllText(Path.Combine(results, "decode.txt"), report.ToString());
        return 0;
    }

    /// <summary>How a timing-only step is named in the report: the one class kept (--only) or the classes omitted.</summary>
    private static string OmitLabel(DecodeStepParts omit)
    {
        if (omit == DecodeStepParts.None) return "";
        var kept = DecodeStepParts.All & ~omit;
        return System.Numerics.BitOperations.PopCount((uint)kept) == 1 && System.Numerics.BitOperations.PopCount((uint)omit) > 1
            ? $", ONLY {kept} (timing only)" : $", OMITTING {omit} (timing only)";
    }

    private static void Sync(bool onCpu)
    {
        if (!onCpu) Native.CudaSynchronize(0);
    }

    /// <summary>Bytes of weights one decode step reads: NF4 packed bytes + absmax codes + nested absmax of every projection
    /// (dense projections at their dtype), the LM head at its dtype, norms; the KV cache and the embedding rows excluded.</summary>
    private static double WeightBytesPerStep(CausalLM model)
    {
        double total = model.LmHeadWeight.numel() * model.LmHeadWeight.element_size();
        foreach (var layer in model.Model.Layers)
        {
            foreach (var p in layer.Projections)
                total += p.Nf4 is { } w
                    ? w.Packed.numel() + w.AbsmaxCodes.numel() + 4.0 * w.NestedAbsmax.numel()
                    : p.OutFeatures * p.InFeatures * model.LmHeadWeight.element_size();
            foreach (var n in layer.Norms) total += n.Weight.numel() * n.Weight.element_size();
        }
        return total;
    }
}
