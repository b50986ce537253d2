using System.CommandLine;
using System.Globalization;
using SlothSharp.Data;
using SlothSharp.Evaluation;
using SlothSharp.Tokenization;
using Spectre.Console;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>`sloth eval`: token-weighted mean cross-entropy of a model on a .jsonl/.txt corpus. Progress goes to
/// stderr; the last stdout line is `loss=&lt;float&gt; tokens=&lt;int&gt;`.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "PEFT LoRA adapter directory" };
        var data = CliOptions.InputFileOption("--data", ".jsonl (one {\"text\": …} per line) or .txt (one document per non-empty line)", required: true);
        var device = CliOptions.Device(defaultValue: "auto", allowAuto: true);
        var dtype = CliOptions.Dtype(description: "compute dtype: bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on the CPU)", defaultValue: null);
        var batch = CliOptions.PositiveInt("--batch", "sequences per forward pass", 8);
        var maxLength = CliOptions.OptionalIntAtLeast("--max-length", "window length in tokens (default: max_position_embeddings); longer documents are split into windows", 2);
        var saveLogits = new Option<string?>("--save-logits")
        {
            Description = "also write a .safetensors file with the float32 logits [1, T, V] and input_ids [1, T] of the corpus's " +
                          $"longest document (BOS + its first tokens, T <= {LogitsDump.MaxTokens}), to compare with another implementation",
        };
        var cmd = new Command("eval", "Mean cross-entropy per token of a model on a corpus (last stdout line: loss=… tokens=…)")
            { model, adapter, data, device, dtype, batch, maxLength, saveLogits };
        cmd.SetAction(r => Run(r.GetValue(model)!, r.GetValue(adapter), r.GetValue(data)!, CliOptions.ToDevice(r.GetValue(device)!),
                               CliOptions.ToComputeDtype(r.GetValue(dtype)), r.GetValue(batch), r.GetValue(maxLength), Console.Out,
                               r.GetValue(saveLogits)));
        return cmd;
    }

    /// <summary>The command after parsing: <paramref name="dtype"/> null is the model's default.</summary>
    public static int Run(string modelDir, string? adapter, string dataPath, Device device, ScalarType? dtype, int batch, int? maxLength, TextWriter stdout,
                          string? saveLogits = null)
    {
        ModelCommandSupport.RequireModelDirectory(modelDir);
        if (saveLogits is not null) LogitsDump.CheckTarget(saveLogits);
        // Cheap checks first: a bad corpus or tokenizer fails before the model is loaded.
        var docs = TextDocuments.Read(dataPath);
        var tok = HfTokenizer.FromDirectory(modelDir);
        var configPath = Path.Combine(modelDir, "config.json");
        var maxPositions = SlothSharp.Models.ModelConfig.Load(configPath).MaxPositionEmbeddings;
        if (maxLength > maxPositions)
            throw new CliException("--max-length", $"{maxLength} exceeds max_position_embeddings ({maxPositions}) of {configPath}");
        using var model = ModelCommandSupport.Load(modelDir, adapter, device, dtype);
        EvalResult result = null!;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ModelCommandSupport.Stderr.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask($"evaluating {docs.Count} document(s)");
                result = Evaluator.Evaluate(model, tok, docs, batch, maxLength, new InlineProgress(p =>
                {
                    task.MaxValue = Math.Max(1, p.total);
                    task.Value = p.done;
                }));
            });
        var seconds = clock.Elapsed.TotalSeconds;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"perplexity {Math.Exp(result.Loss):G6}; {result.Tokens} predicted tokens in {seconds:F2} s ({result.Tokens / Math.Max(seconds, 1e-9):F0} tokens/s, tokenization included)"));
        if (saveLogits is not null)
        {
            var tokens = LogitsDump.Save(model, tok, docs, maxLength, saveLogits);
            Console.Error.WriteLine($"logits of {tokens} tokens written to {saveLogits}");
        }
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"loss={result.Loss:R} tokens={result.Tokens}"));
        return 0;
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class InlineProgress(Action<(int done, int total)> report) : IProgress<(int done, int total)>
    {
        public void Report((int done, int total) value) => report(value);
    }
}
