using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Columns;
using Perfolizer.Horology;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace SlothSharp.Bench;

internal static class BenchSetup
{
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
