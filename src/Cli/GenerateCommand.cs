using System.CommandLine;
using SlothSharp.Generation;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>`sloth generate`: continues a prompt, streaming the new text to stdout as tokens are produced.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "PEFT LoRA adapter directory" };
        var prompt = new Option<string>("--prompt") { Description = "text to continue (BOS is added in front)", Required = true };
        var maxNew = CliOptions.PositiveInt("--max-new-tokens", "at most this many new tokens", 64);
        var temperature = CliOptions.NonNegativeDouble("--temperature", "0 = greedy (default); > 0 samples", 0);
        var topP = CliOptions.DoubleInRange("--top-p", "nucleus sampling: keep the most likely tokens up to this probability", 1, 0, 1, minExclusive: true);
        var topK = CliOptions.IntAtLeast("--top-k", "sample among the k most likely tokens (0 = all)", 0, 0);
        var seed = new Option<long>("--seed") { Description = "sampling seed (the same seed gives the same text)", DefaultValueFactory = _ => 0 };
        var device = CliOptions.Device(defaultValue: "auto", allowAuto: true);
        var dtype = CliOptions.Dtype(description: "compute dtype: bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on the CPU)", defaultValue: null);
        var cmd = new Command("generate", "Continue a prompt with a model (streams the text; stops at EOS or --max-new-tokens)")
            { model, adapter, prompt, maxNew, temperature, topP, topK, seed, device, dtype };
        cmd.SetAction(r => Run(r.GetValue(model)!, r.GetValue(adapter), r.GetValue(prompt)!,
            new GenerationOptions(r.GetValue(maxNew), r.GetValue(temperature), r.GetValue(topP), r.GetValue(topK), r.GetValue(seed)),
            CliOptions.ToDevice(r.GetValue(device)!), CliOptions.ToComputeDtype(r.GetValue(dtype)), Console.Out));
        return cmd;
    }

    /// <summary>The command after parsing: <paramref name="dtype"/> null is the model's default.</summary>
    public static int Run(string modelDir, string? adapter, string prompt, GenerationOptions options, Device device, ScalarType? dtype, TextWriter stdout)
    {
        ModelCommandSupport.RequireModelDirectory(modelDir);
        var tok = HfTokenizer.FromDirectory(modelDir);
        var ids = tok.Encode(prompt, addBos: tok.BosTokenId is not null);
        using var model = ModelCommandSupport.Load(modelDir, adapter, device, dtype);
        var decoder = new StreamingTextDecoder(tok);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double firstTokenSeconds = 0;
        var produced = 0;
        foreach (var id in TextGenerator.Generate(model, ids, options))
        {
            if (produced++ == 0) firstTokenSeconds = clock.Elapsed.TotalSeconds;
            stdout.Write(decoder.Push(id));
            stdout.Flush();
        }
        var total = clock.Elapsed.TotalSeconds;
        stdout.Write(decoder.Flush());
        stdout.WriteLine();
        // Timing on stderr (stdout is the text): the prompt pass, then the per-token decode rate after it.
        var rate = produced > 1 ? (produced - 1) / (total - firstTokenSeconds) : 0;
        Console.Error.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"prompt {ids.Length} tokens, first token after {firstTokenSeconds * 1000:F1} ms; {produced} new tokens in {total:F2} s ({rate:F1} tokens/s after the first)"));
        return 0;
    }
}
