using System.CommandLine;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SlothSharp.Data;
using SlothSharp.Templates;
using SlothSharp.Tokenization;
using Spectre.Console;

namespace SlothSharp.Cli;

/// <summary>`sloth preview`: each dataset row as fine-tuning sees it (the chat template's render, or the document with
/// BOS/EOS) and which parts of it are trained, so a template or --train-on mistake shows before any GPU time is spent.
/// The trained parts come from the same <see cref="ExampleTokenizer"/> that builds the training rows.</summary>
internal static class PreviewCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory (tokenizer.json, tokenizer_config.json, its chat template)", Required = true };
        var data = CliOptions.InputFileOption("--data", DatasetInput.DataDescription, required: true);
        var format = DatasetInput.FormatOption();
        var chatTemplate = DatasetInput.ChatTemplateOption();
        var trainOn = DatasetInput.TrainOnOption();
        var generationPrompt = new Option<bool>("--add-generation-prompt") { Description = "show conversations with the assistant's turn header appended (as for generation); the trained parts are unchanged" };
        var limit = CliOptions.OptionalPositiveInt("--limit", "show only the first N rows");
        var jsonl = new Option<bool>("--jsonl") { Description = "one JSON line per row: {\"text\": the rendered text, \"trained\": [each trained part, in order]}" };
        var cmd = new Command("preview", "Show each dataset row as fine-tuning renders it, with the trained parts marked")
            { model, data, format, chatTemplate, trainOn, generationPrompt, limit, jsonl };
        cmd.SetAction(r => Run(r.GetValue(model)!, r.GetValue(data)!, new DataSelection(r.GetValue(format)!, r.GetValue(chatTemplate), r.GetValue(trainOn)),
                               r.GetValue(generationPrompt), r.GetValue(limit), r.GetValue(jsonl), r.InvocationConfiguration.Output));
        return cmd;
    }

    /// <summary>One row as previewed: the text and its trained parts (substrings of it, in order).</summary>
    internal sealed record PreviewRow(string Source, string Text, IReadOnlyList<string> Trained, int Tokens, int Targets);

    public static int Run(string modelDir, string dataPath, DataSelection selection, bool addGenerationPrompt, int? limit, bool jsonl, TextWriter stdout)
    {
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"--model: {modelDir}: directory not found");
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var rows = Rows(modelDir, dataPath, selection, tokenizer, addGenerationPrompt, limit);
        var options = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var count = 0;
        foreach (var row in rows)
        {
            if (jsonl)
            {
                var line = new JsonObject { ["text"] = row.Text, ["trained"] = new JsonArray(row.Trained.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()) };
                stdout.WriteLine(line.ToJsonString(options));
            }
            else Show(row);
            count++;
        }
        if (!jsonl) AnsiConsole.MarkupLine($"[grey]{count} row(s); trained parts shown [black on green]like this[/][/]");
        return 0;
    }

    /// <summary>The rows, rendered and tokenized lazily (an error stops at the row that has it, after the rows before).</summary>
    internal static IEnumerable<PreviewRow> Rows(string modelDir, string dataPath, DataSelection selection, HfTokenizer tokenizer, bool addGenerationPrompt, int? limit)
    {
        var trainOn = DatasetInput.ToTrainOn(selection.TrainOn);
        IReadOnlyList<TrainingExample> examples;
        if (DatasetInput.IsPlainText(dataPath, selection))
            examples = TextDocuments.Read(dataPath).Select((d, i) => TrainingExample.FromText(d, $"{dataPath}: document {i + 1}")).ToList();
        else examples = DatasetInput.LoadExamples(dataPath, selection);
        if (limit is { } n) examples = examples.Take(n).ToList();
        var template = DatasetInput.ResolveTemplate(modelDir, selection.ChatTemplate, DatasetInput.NeedsTemplate(examples));
        var render = template is null ? null : DatasetInput.Renderer(template);
        var exampleTokenizer = new ExampleTokenizer(tokenizer, render);
        foreach (var example in examples)
        {
            var tokenized = exampleTokenizer.Tokenize(example, trainOn);
            string text;
            if (example.Kind is ExampleKind.Conversation or ExampleKind.ConversationalPromptCompletion)
            {
                var messages = example.CompletionMessages is null ? example.Messages!
                    : new JsonArray([.. example.Messages!.Select(m => m?.DeepClone()), .. example.CompletionMessages.Select(m => m?.DeepClone())]);
                text = RenderRow(example, render!, messages, addGenerationPrompt);
            }
            else text = tokenizer.Decode(tokenized.Ids, skipSpecialTokens: false);
            yield return new PreviewRow(example.Source, text, TrainedParts(tokenizer, tokenized), tokenized.Ids.Length, tokenized.Targets);
        }
    }

    private static string RenderRow(TrainingExample example, RenderConversation render, JsonArray messages, bool addGenerationPrompt)
    {
        try { return render(messages, example.Tools?.DeepClone().AsArray(), addGenerationPrompt); }
        catch (Exception e) when (e is ChatTemplateException or TemplateException)
        {
            throw new InvalidDataException($"{example.Source}: the chat template rejected this row{(addGenerationPrompt ? " (with the generation prompt)" : "")}: {e.Message}", e);
        }
    }

    /// <summary>The decoded runs of consecutive trained tokens (token 0 is never a target: nothing predicts it).</summary>
    internal static List<string> TrainedParts(HfTokenizer tokenizer, TokenizedExample example)
    {
        var parts = new List<string>();
        var j = 1;
        while (j < example.Ids.Length)
        {
            if (!example.Trained[j]) { j++; continue; }
            var start = j;
            while (j < example.Ids.Length && example.Trained[j]) j++;
            parts.Add(tokenizer.Decode(example.Ids[start..j], skipSpecialTokens: false));
        }
        return parts;
    }

    /// <summary>The row on the terminal: a header, then the text with each trained part highlighted where it is found
    /// (in order); a part the text does not spell (a token split inside a character) is listed after it.</summary>
    private static void Show(PreviewRow row)
    {
        AnsiConsole.Write(new Rule($"[bold]{Markup.Escape(row.Source)}[/] [grey]{row.Tokens} tokens, {row.Targets} trained[/]") { Justification = Justify.Left });
        var markup = new StringBuilder();
        var unplaced = new List<string>();
        var cursor = 0;
        foreach (var part in row.Trained)
        {
            var at = part.Length == 0 ? -1 : row.Text.IndexOf(part, cursor, StringComparison.Ordinal);
            if (at < 0) { unplaced.Add(part); continue; }
            markup.Append(Markup.Escape(row.Text[cursor..at])).Append("[black on green]").Append(Markup.Escape(part)).Append("[/]");
            cursor = at + part.Length;
        }
        markup.Append(Markup.Escape(row.Text[cursor..]));
        AnsiConsole.MarkupLine(markup.ToString());
        foreach (var part in unplaced) AnsiConsole.MarkupLine($"[grey]trained (not located in the text):[/] [black on green]{Markup.Escape(part)}[/]");
    }
}
