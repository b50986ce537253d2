using System.CommandLine;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json.Nodes;
using System.Text.Json;
using SlothSharp.Chat;
using SlothSharp.Generation;
using SlothSharp.Templates;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>`sloth generate`: continues a prompt, streaming the new text to stdout as tokens are produced; with
/// --prompts, generates for every line of a .jsonl file in batches (<see cref="BatchGenerator"/>) and writes one JSON
/// line per prompt in input order.</summary>
internal static class GenerateCommand
{
    // JSON Lines for people and tools alike: '<', '>' and non-ASCII text as themselves (the default escapes them as
    // \uXXXX, valid but unreadable for chat-template text); control characters and quotes are still escaped.
    private static readonly JsonSerializerOptions JsonLines = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "PEFT LoRA adapter directory" };
        var prompt = new Option<string?>("--prompt") { Description = "text to continue (BOS is added in front); or use --prompts" };
        var prompts = new Option<string?>("--prompts") { Description = ".jsonl file, one {\"prompt\": text} or {\"messages\": [...]} per line, generated in batches" };
        var batch = CliOptions.PositiveInt("--batch", "with --prompts: prompts per batch (sorted by length to reduce padding)", 8);
        var outFile = new Option<string?>("--out") { Description = "with --prompts: write the results (.jsonl) here instead of stdout" };
        var chatTemplate = DatasetInput.ChatTemplateOption();
        var maxNew = CliOptions.PositiveInt("--max-new-tokens", "at most this many new tokens", 64);
        var temperature = CliOptions.NonNegativeDouble("--temperature", "0 = greedy (default); > 0 samples", 0);
        var topP = CliOptions.DoubleInRange("--top-p", "nucleus sampling: keep the most likely tokens up to this probability", 1, 0, 1, minExclusive: true);
        var topK = CliOptions.IntAtLeast("--top-k", "sample among the k most likely tokens (0 = all)", 0, 0);
        var penalty = CliOptions.PositiveDouble("--repetition-penalty", "divide (multiply when negative) the logits of tokens already in the sequence by this (1 = off)", 1);
        var seed = new Option<long>("--seed") { Description = "sampling seed (the same seed gives the same text)", DefaultValueFactory = _ => 0 };
        var dense = new Option<bool>("--dense-weights")
        {
            Description = "decode from a dense copy of the NF4 weights made once (4x their memory besides them; faster for a large --batch, slower at batch 1)",
        };
        var device = CliOptions.Device(defaultValue: "auto", allowAuto: true);
        var dtype = CliOptions.Dtype(description: "compute dtype: bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on the CPU)", defaultValue: null);
        var cmd = new Command("generate", "Continue a prompt with a model (streams the text; stops at EOS or --max-new-tokens), or many prompts in batches (--prompts)")
            { model, adapter, prompt, prompts, batch, outFile, chatTemplate, maxNew, temperature, topP, topK, penalty, seed, dense, device, dtype };
        cmd.SetAction(r =>
        {
            var options = new GenerationOptions(r.GetValue(maxNew), r.GetValue(temperature), r.GetValue(topP), r.GetValue(topK), r.GetValue(seed),
                                                RepetitionPenalty: r.GetValue(penalty), DenseWeightsWhenDecoding: r.GetValue(dense));
            var (text, file) = (r.GetValue(prompt), r.GetValue(prompts));
            if ((text is null) == (file is null)) throw new CliException("--prompt", "give either --prompt TEXT or --prompts FILE.jsonl");
            var dev = CliOptions.ToDevice(r.GetValue(device)!);
            var dt = CliOptions.ToComputeDtype(r.GetValue(dtype));
            if (file is null)
            {
                foreach (var o in new Option[] { batch, outFile, chatTemplate })
                    if (r.GetResult(o) is { Implicit: false }) throw new CliException(o.Name, "only with --prompts");
                return Run(r.GetValue(model)!, r.GetValue(adapter), text!, options, dev, dt, Console.Out);
            }
            return RunBatch(r.GetValue(model)!, r.GetValue(adapter), file, r.GetValue(batch), r.GetValue(outFile), r.GetValue(chatTemplate),
                            options, dev, dt, r.InvocationConfiguration.Output, r.InvocationConfiguration.Error);
        });
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

    /// <summary>
    /// `--prompts FILE`: every request of the file (see <see cref="PromptsFile"/>; checked before the model loads),
    /// generated <paramref name="batchSize"/> at a time, then one line per prompt in input order —
    /// {"index", "prompt", "completion", "tokens", "finish_reason": "stop"|"length"} — to <paramref name="outPath"/>
    /// (written to a temporary file, then renamed: never half-written) or <paramref name="stdout"/>. "prompt" is the
    /// text the model continued (for "messages", the rendered conversation); "completion" leaves out a final stop token;
    /// "tokens" counts the new tokens (a stop token included). Progress (prompts done, tokens/s) and a summary go to
    /// <paramref name="stderr"/>. When any request has "messages", generation also stops at the template's end-of-turn
    /// token and the tokenizer's EOS (as `sloth chat`), for every request.
    /// </summary>
    public static int RunBatch(string modelDir, string? adapter, string promptsPath, int batchSize, string? outPath, string? templateName,
                               GenerationOptions options, Device device, ScalarType? dtype, TextWriter stdout, TextWriter stderr)
    {
        ModelCommandSupport.RequireModelDirectory(modelDir);
        var requests = PromptsFile.Read(promptsPath);
        if (outPath is not null)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(outPath))!;
            if (!Directory.Exists(dir)) throw new CliException("--out", $"{outPath}: directory not found");
            if (Directory.Exists(outPath)) throw new CliException("--out", $"{outPath}: is a folder, not a file");
        }
        var tok = HfTokenizer.FromDirectory(modelDir);
        var chat = requests.Any(r => r.Messages is not null);
        var template = chat ? DatasetInput.ResolveTemplate(modelDir, templateName, needed: true)! : DatasetInput.ResolveTemplate(modelDir, templateName, needed: false);
        var bos = tok.BosTokenId is { } b ? tok.IdToToken(b) : null;
        var texts = new string[requests.Count];
        var ids = new IReadOnlyList<int>[requests.Count];
        for (var i = 0; i < requests.Count; i++)
        {
            var request = requests[i];
            if (request.Messages is { } messages)
            {
                try { texts[i] = template!.Render(messages, new ChatRenderOptions { AddGenerationPrompt = true }).Text; }
                catch (Exception e) when (e is ChatTemplateException or TemplateException)
                {
                    throw new CliException(promptsPath, $"line {request.Line}: field \"messages\": the chat template rejected the conversation: {CliErrors.Clean(e.Message)}");
                }
                ids[i] = tok.Encode(texts[i], addBos: bos is not null && !texts[i].StartsWith(bos, StringComparison.Ordinal));
            }
            else
            {
                texts[i] = request.Text!;
                ids[i] = tok.Encode(texts[i], addBos: tok.BosTokenId is not null);
            }
        }

        using var model = ModelCommandSupport.Load(modelDir, adapter, device, dtype);
        for (var i = 0; i < ids.Length; i++)
            if (ids[i].Count > model.Config.MaxPositionEmbeddings)
                throw new CliException(promptsPath, $"line {requests[i].Line}: the prompt has {ids[i].Count} tokens, more than the model's max_position_embeddings ({model.Config.MaxPositionEmbeddings})");
        var stops = chat ? ChatStops.StopIds(model, tok, template is null ? null : ChatStops.EndOfTurnText(template))
                         : options.StopTokenIds ?? TextGenerator.DefaultStopTokenIds(model);
        options = options with { StopTokenIds = stops };

        var clock = System.Diagnostics.Stopwatch.StartNew();
        long newTokens = 0;
        var finished = 0;
        var lastReport = TimeSpan.Zero;
        string Rate() => string.Create(CultureInfo.InvariantCulture, $"{newTokens / Math.Max(clock.Elapsed.TotalSeconds, 1e-9):F1} tokens/s");
        var results = BatchGenerator.Generate(model, ids, options, batchSize, e =>
        {
            newTokens++;
            if (e.Finish is null) return;
            finished++;
            if (clock.Elapsed - lastReport < TimeSpan.FromSeconds(1) && finished < ids.Length) return;
            lastReport = clock.Elapsed;
            stderr.WriteLine($"{finished}/{ids.Length} prompts done, {newTokens} new tokens, {Rate()}");
        });
        var stopSet = stops.ToHashSet();

        var lines = new List<string>(results.Count);
        foreach (var r in results)
        {
            var shown = r.FinishReason == FinishReason.Stop && r.TokenIds.Count > 0 && stopSet.Contains(r.TokenIds[^1]) ? r.TokenIds.Take(r.TokenIds.Count - 1) : r.TokenIds;
            lines.Add(new JsonObject
            {
                ["index"] = r.PromptIndex,
                ["prompt"] = texts[r.PromptIndex],
                ["completion"] = tok.Decode(shown),
                ["tokens"] = r.TokenIds.Count,
                ["finish_reason"] = r.FinishReason == FinishReason.Stop ? "stop" : "length",
            }.ToJsonString(JsonLines));
        }
        if (outPath is null)
        {
            foreach (var line in lines) stdout.WriteLine(line);
            stdout.Flush();
        }
        else
        {
            var temp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(outPath))!, $".{Path.GetFileName(outPath)}.{Environment.ProcessId}.tmp");
            try
            {
                File.WriteAllLines(temp, lines, new System.Text.UTF8Encoding(false));
                File.Move(temp, outPath, overwrite: true);
            }
            finally { if (File.Exists(temp)) File.Delete(temp); }
        }
        stderr.WriteLine($"done: {results.Count} prompts, {newTokens} new tokens in {clock.Elapsed.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture)} s ({Rate()})");
        return 0;
    }
}
