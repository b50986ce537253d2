using System.CommandLine;
using SlothSharp.Data;
using SlothSharp.Templates;
using SlothSharp.Tokenization;
using SlothSharp.Training;

namespace SlothSharp.Cli;

/// <summary>What --format, --chat-template and --train-on said (finetune and preview share them).</summary>
/// <param name="Format">auto, text, messages, sharegpt, alpaca or prompt-completion.</param>
/// <param name="ChatTemplate">A built-in name, a template file or a named template of the model; null: the model's.</param>
/// <param name="TrainOn">all, assistant or last-assistant; null: assistant replies / completions, everything for text.</param>
internal sealed record DataSelection(string Format = "auto", string? ChatTemplate = null, string? TrainOn = null);

/// <summary>Training data as the CLI reads it. Plain text (.txt, or .jsonl whose rows are <c>{"text": …}</c>) keeps
/// the original path (<see cref="TextDocuments"/> + <see cref="TrainingData.FromDocuments"/>) so its rows and resume
/// fingerprints do not change; every other dataset goes through <see cref="DatasetExamples"/> and
/// <see cref="TrainingData.FromExamples"/>, conversations rendered by a <see cref="ChatTemplate"/>.</summary>
internal static class DatasetInput
{
    public static readonly string[] FormatNames = ["auto", "text", "messages", "sharegpt", "alpaca", "prompt-completion"];
    public static readonly string[] TrainOnNames = ["all", "assistant", "last-assistant"];
    public const string DataDescription = ".jsonl, .json or .parquet rows (text, messages, ShareGPT conversations, Alpaca or prompt/completion), or .txt (one document per non-empty line)";

    public static Option<string> FormatOption() =>
        CliOptions.OneOf("--format", "dataset layout: auto (detected from the rows' fields), text, messages, sharegpt, alpaca or prompt-completion", "auto", FormatNames);

    public static Option<string?> ChatTemplateOption() =>
        new("--chat-template") { Description = $"chat template for conversations: a built-in ({string.Join(", ", ChatTemplate.BuiltInNames)}), a .jinja file, or a named template of the model (default: the model directory's template)" };

    public static Option<string> TrainOnOption()
    {
        var option = CliOptions.OneOf("--train-on", "which tokens are trained: all, assistant (every reply with its end-of-turn) or last-assistant (default: the replies / completions of conversations and prompt/completion rows, everything of plain text)", null, TrainOnNames);
        return option;
    }

    public static DatasetFormat ToFormat(string name) => name switch
    {
        "auto" => DatasetFormat.Auto,
        "text" => DatasetFormat.Text,
        "messages" => DatasetFormat.Messages,
        "sharegpt" => DatasetFormat.ShareGpt,
        "alpaca" => DatasetFormat.Alpaca,
        "prompt-completion" => DatasetFormat.PromptCompletion,
        _ => throw new CliException("--format", $"unknown format '{name}' ({string.Join(", ", FormatNames)})"),
    };

    public static TrainOn ToTrainOn(string? name) => name switch
    {
        null => TrainOn.Default,
        "all" => TrainOn.All,
        "assistant" => TrainOn.Assistant,
        "last-assistant" => TrainOn.LastAssistant,
        _ => throw new CliException("--train-on", $"unknown value '{name}' ({string.Join(", ", TrainOnNames)})"),
    };

    /// <summary>Whether <paramref name="path"/> is read as plain documents: a .txt file, or a .jsonl file whose rows
    /// are (or are declared) text.</summary>
    public static bool IsPlainText(string path, DataSelection selection)
    {
        var format = ToFormat(selection.Format);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        bool plain;
        if (ext == ".txt")
        {
            if (format is not (DatasetFormat.Auto or DatasetFormat.Text))
                throw new CliException("--format", $"{selection.Format} needs .jsonl, .json or .parquet rows, but {path} is a plain-text file (one document per line)");
            plain = true;
        }
        else if (ext == ".jsonl" && format is DatasetFormat.Auto or DatasetFormat.Text)
            plain = format == DatasetFormat.Text || DatasetExamples.Detect(ReadRows(path)) == DatasetFormat.Text;
        else if (ext is ".jsonl" or ".json" or ".parquet") plain = false;
        else throw new CliException(path, $"unknown extension '{ext}': expected {DataDescription}");
        if (plain && ToTrainOn(selection.TrainOn) is TrainOn.Assistant or TrainOn.LastAssistant)
            throw new CliException("--train-on", $"{selection.TrainOn} trains assistant replies, but {path} holds plain text (use --train-on all, or conversation rows)");
        return plain;
    }

    /// <summary>The dataset's examples (not for plain text, see <see cref="IsPlainText"/>).</summary>
    public static IReadOnlyList<TrainingExample> LoadExamples(string path, DataSelection selection) =>
        DatasetExamples.FromRows(ReadRows(path), ToFormat(selection.Format));

    private static IReadOnlyList<DatasetRow> ReadRows(string path)
    {
        IReadOnlyList<DatasetRow> rows;
        try { rows = DatasetReader.Read(path); }
        catch (ArgumentException e) { throw new CliException(path, CliErrors.Clean(e.Message)); }
        if (rows.Count == 0) throw new CliException(path, "no rows (the file is empty)");
        return rows;
    }

    /// <summary>Whether any example needs a chat template.</summary>
    public static bool NeedsTemplate(IEnumerable<TrainingExample> examples) =>
        examples.Any(e => e.Kind is ExampleKind.Conversation or ExampleKind.ConversationalPromptCompletion);

    /// <summary>The template --chat-template names, else (when <paramref name="needed"/>) the model directory's;
    /// null when neither is asked for. Every problem is a <see cref="CliException"/> on --chat-template.</summary>
    public static ChatTemplate? ResolveTemplate(string modelDir, string? name, bool needed)
    {
        if (name is not null)
        {
            try { return ChatTemplate.Resolve(name, modelDir); }
            catch (Exception e) when (e is ArgumentException or TemplateException or InvalidDataException or IOException)
            {
                throw new CliException("--chat-template", CliErrors.Clean(e.Message));
            }
        }
        if (!needed) return null;
        try { return ChatTemplate.FromModelDirectory(modelDir); }
        catch (InvalidDataException)
        {
            throw new CliException("--chat-template", $"the data holds conversations, but {modelDir} has no chat template (chat_template.jinja or tokenizer_config.json's chat_template); " +
                                                      $"name one with --chat-template: a built-in ({string.Join(", ", ChatTemplate.BuiltInNames)}) or a .jinja file");
        }
        catch (TemplateException e) { throw new CliException("--chat-template", $"the model's chat template does not parse: {CliErrors.Clean(e.Message)}"); }
    }

    /// <summary>The template as the data pipeline's renderer (apply_chat_template(messages, tools, add_generation_prompt)).</summary>
    public static RenderConversation Renderer(ChatTemplate template) =>
        (messages, tools, addGenerationPrompt) => template.Render(messages, new ChatRenderOptions { AddGenerationPrompt = addGenerationPrompt, Tools = tools }).Text;

    /// <summary>Training rows of <paramref name="path"/> and a description for the progress output.</summary>
    public static (TrainingData Data, string Description) LoadTraining(string modelDir, string path, DataSelection selection, HfTokenizer tokenizer,
                                                                      int sequenceLength, bool packing)
    {
        if (IsPlainText(path, selection))
        {
            var documents = TextDocuments.Read(path);
            return (TrainingData.FromDocuments(tokenizer, documents, sequenceLength, packing), $"{documents.Count:N0} documents");
        }
        var examples = LoadExamples(path, selection);
        var template = ResolveTemplate(modelDir, selection.ChatTemplate, NeedsTemplate(examples));
        var data = TrainingData.FromExamples(examples, tokenizer, template is null ? null : Renderer(template), new TrainingDataOptions
        {
            SequenceLength = sequenceLength, Packing = packing, TrainOn = ToTrainOn(selection.TrainOn),
        });
        var kinds = string.Join(", ", examples.GroupBy(e => e.Kind).Select(g => $"{g.Count():N0} {KindName(g.Key)}"));
        return (data, template is null ? kinds : $"{kinds}, chat template {template.Name}");
    }

    private static string KindName(ExampleKind kind) => kind switch
    {
        ExampleKind.Text => "texts",
        ExampleKind.Conversation => "conversations",
        ExampleKind.PromptCompletion => "prompt/completion pairs",
        _ => "conversational prompt/completion pairs",
    };
}
