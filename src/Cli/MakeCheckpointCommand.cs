using System.CommandLine;
using System.Diagnostics;
using SlothSharp.Models;

namespace SlothSharp.Cli;

/// <summary>`sloth make-checkpoint`: writes a Hugging Face checkpoint (any supported family) with random weights (dense bf16 or
/// bitsandbytes 4-bit), for benchmarks and tests on machines with no network: the same files a Hub download has.</summary>
public static class MakeCheckpointCommand
{
    /// <summary>The shapes it can write (<see cref="ModelPresets"/>).</summary>
    public static IReadOnlyList<string> Presets => ModelPresets.Names;

    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "new directory for the checkpoint", Required = true };
        var preset = CliOptions.OneOf("--preset", $"shape: {string.Join(", ", Presets)}", "llama-3.2-1b", [.. Presets]);
        var bnb = new Option<bool>("--bnb-4bit") { Description = "write the bitsandbytes NF4 layout (quantization_config in config.json) instead of dense bf16" };
        var seed = new Option<long>("--seed") { Description = "weights are N(0, 0.02^2) from this seed (norms at identity)", DefaultValueFactory = _ => 0 };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "folder whose tokenizer.json / tokenizer_config.json are copied in" };
        var cmd = new Command("make-checkpoint", "Write a Hugging Face checkpoint of a published shape with random weights (dense or bnb-4bit)")
            { output, preset, bnb, seed, tokenizer };
        cmd.SetAction(r => Run(r.GetValue(output)!, r.GetValue(preset)!, r.GetValue(bnb), r.GetValue(seed), r.GetValue(tokenizer)));
        return cmd;
    }

    internal static int Run(string outDir, string preset, bool bnb4bit, long seed, string? tokenizerDir)
    {
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any())
            throw new CliException("--out", $"{outDir}: exists and is not empty");
        string? tokenizerJson = null;
        if (tokenizerDir is not null)
        {
            tokenizerJson = Path.Combine(tokenizerDir, "tokenizer.json");
            if (!File.Exists(tokenizerJson)) throw new CliException("--tokenizer", $"{tokenizerJson}: not found");
        }
        var clock = Stopwatch.StartNew();
        CheckpointWriter.WriteRandom(outDir, ModelPresets.Get(preset), seed, bnb4bit, tokenizerJson);
        Console.WriteLine($"wrote {preset} ({(bnb4bit ? "bnb-4bit" : "dense bf16")}) to {Path.GetFullPath(outDir)} in {clock.Elapsed.TotalSeconds:F1} s");
        return ExitCodes.Ok;
    }
}
