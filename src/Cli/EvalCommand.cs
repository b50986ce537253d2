using System.CommandLine;
using System.Globalization;
using SlothSharp.Data;
using SlothSharp.Evaluation;
using SlothSharp.Tokenization;
using Spectre.Console;

namespace SlothSharp.Cli;

/// <summary>`sloth eval`: token-weighted mean cross-entropy of a model on a .jsonl/.txt corpus. Progress goes to
/// stderr; the last stdout line is `loss=&lt;float&gt; tokens=&lt;int&gt;`.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "PEFT LoRA adapter directory" };
        var data = new Option<string>("--data") { Description = ".jsonl (one {\"text\": …} per line) or .txt (one document per non-empty line)", Required = true };
        var device = new Option<string>("--device") { Description = "auto (CUDA when available), cpu, cuda or cuda:N", DefaultValueFactory = _ => "auto" };
        var dtype = new Option<string?>("--dtype") { Description = "compute dtype: bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on the CPU)" };
        var batch = new Option<int>("--batch") { Description = "sequences per forward pass", DefaultValueFactory = _ => 8 };
        var maxLength = new Option<int?>("--max-length") { Description = "window length in tokens (default: max_position_embeddings); longer documents are split into windows" };
        var cmd = new Command("eval", "Mean cross-entropy per token of a model on a corpus (last stdout line: loss=… tokens=…)")
            { model, adapter, data, device, dtype, batch, maxLength };
        cmd.SetAction(r => ModelCommandSupport.Guard(() => Run(r.GetValue(model)!, r.GetValue(adapter), r.GetValue(data)!, r.GetValue(device)!, r.GetValue(dtype),
                               r.GetValue(batch), r.GetValue(maxLength), Console.Out)));
        return cmd;
    }

    public static int Run(string modelDir, string? adapter, string dataPath, string device, string? dtype, int batch, int? maxLength, TextWriter stdout)
    {
        if (batch < 1) throw new ArgumentException($"--batch: must be >= 1 (got {batch})");
        if (maxLength is < 2) throw new ArgumentException($"--max-length: must be >= 2 (got {maxLength})");
        var dev = ModelCommandSupport.ParseDevice(device);
        var dt = ModelCommandSupport.ParseDtype(dtype);
        ModelCommandSupport.RequireModelDirectory(modelDir);
        // Cheap checks first: a bad corpus or tokenizer fails before the model is loaded.
        var docs = TextDocuments.Read(dataPath);
        var tok = HfTokenizer.FromDirectory(modelDir);
        var configPath = Path.Combine(modelDir, "config.json");
        var maxPositions = SlothSharp.Models.LlamaConfig.Load(configPath).MaxPositionEmbeddings;
        if (maxLength > maxPositions)
            throw new ArgumentException($"--max-length: {maxLength} exceeds max_position_embeddings ({maxPositions}) of {configPath}");
        using var model = ModelCommandSupport.Load(modelDir, adapter, dev, dt);
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
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"loss={result.Loss:R} tokens={result.Tokens}"));
        return 0;
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class InlineProgress(Action<(int done, int total)> report) : IProgress<(int done, int total)>
    {
        public void Report((int done, int total) value) => report(value);
    }
}
