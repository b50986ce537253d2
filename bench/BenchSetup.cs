using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Columns;
using Perfolizer.Horology;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

using SlothSharp.Losses;

namespace SlothSharp.Bench;

internal static class BenchSetup
{
    /// <summary>The loss options every benchmark starts from: the library's defaults, with the environment's
    /// SLOTHSHARP_GEMM_TUNE (0: cuBLASLt's first choice, no timing, as a profiler's window wants; wide: the wide search)
    /// as the fused loss's <see cref="CrossEntropyOptions.GemmTuning"/>. Read once (the step benchmarks ask every step).</summary>
    public static CrossEntropyOptions LossOptions { get; } = new()
    {
        GemmTuning = Environment.GetEnvironmentVariable("SLOTHSHARP_GEMM_TUNE") switch
        {
            "0" => SlothSharp.Ops.GemmTuning.None,
            "wide" => SlothSharp.Ops.GemmTuning.Wide,
            _ => SlothSharp.Ops.GemmTuning.Heuristic,
        },
    };

    /// <summary>The fused loss's internal switches from the environment, set once at start (A/B runs of the library's
    /// defaults): SLOTHSHARP_CE_GEMM=torch (its GEMMs through TorchSharp's matmul instead of cuBLASLt),
    /// SLOTHSHARP_CE_SKIP_UNIT_UPSTREAM=0 (scale by an upstream gradient of 1 too), SLOTHSHARP_CE_HAND_OFF_DW=0 (copy dW
    /// into W.grad instead of handing it over).</summary>
    public static void ApplyEnvironment()
    {
        if (Environment.GetEnvironmentVariable("SLOTHSHARP_CE_GEMM") == "torch") FusedCrossEntropyTuning.UseTunedGemm = false;
        if (Environment.GetEnvironmentVariable("SLOTHSHARP_CE_SKIP_UNIT_UPSTREAM") == "0") FusedCrossEntropyTuning.SkipUnitUpstreamScale = false;
        if (Environment.GetEnvironmentVariable("SLOTHSHARP_CE_HAND_OFF_DW") == "0") FusedCrossEntropyTuning.HandWeightGradToLeaf = false;
    }

    /// <summary>In-process (the GPU machine has the runtime, not the SDK), short iterations: GPU kernels are
    /// microseconds long and each invocation already batches many launches before one synchronize.</summary>
    public static IConfig Config(string artifacts, bool quick) =>
        ManualConfig.CreateEmpty()
            .AddJob(Job.Default
                .WithToolchain(InProcessEmitToolchain.Instance)
                .WithLaunchCount(1)
                .WithWarmupCount(quick ? 1 : 3)
                .WithIterationCount(quick ? 3 : 12)
                .WithIterationTime(TimeInterval.FromMilliseconds(quick ? 50 : 150))
                .WithUnrollFactor(1))
            .AddLogger(ConsoleLogger.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddExporter(MarkdownExporter.GitHub)
            .WithArtifactsPath(artifacts)
            .WithOptions(ConfigOptions.DisableOptimizationsValidator | ConfigOptions.JoinSummary);
}
