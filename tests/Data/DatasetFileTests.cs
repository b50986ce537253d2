using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Data;
using static SlothSharp.Tests.Data.DatasetTestSupport;

namespace SlothSharp.Tests.Data;

/// <summary>Every format from the committed .jsonl/.json/.parquet files of tests/data/datasets.</summary>
public class DatasetFileTests
{
    private static string[] Roles(JsonArray messages) => messages.Select(m => Conversation.Role((JsonObject)m!)!).ToArray();

    [Test]
    public void TextJsonlSkipsBlankLinesAndKeepsUnicode()
    {
        var rows = DatasetReader.Read(File("text.jsonl"));
        Assert.That(rows.Select(r => r.Location), Is.EqualTo(new[] { "line 1", "line 3" }));
        Assert.That(DatasetExamples.Detect(rows), Is.EqualTo(DatasetFormat.Text));
        var examples = DatasetExamples.FromRows(rows);
        Assert.That(examples.Select(e => e.Text), Is.EqualTo(new[] { "The quick brown fox jumps over the lazy dog.", "Hello world, é 😀" }));
        Assert.That(examples[1].Source, Does.EndWith("text.jsonl: line 3"));
    }

    [Test]
    public void MessagesJsonlKeepsToolCallsToolResultsAndTools()
    {
        var examples = DatasetExamples.Load(File("messages.jsonl"));
        Assert.That(examples.Select(e => e.Kind), Is.All.EqualTo(ExampleKind.Conversation));
        Assert.That(Roles(examples[0].Messages!), Is.EqualTo(new[] { "system", "user", "assistant" }));
        Assert.That(examples[0].Tools, Is.Null);
        var chat = examples[1].Messages!;
        Assert.That(Roles(chat), Is.EqualTo(new[] { "user", "assistant", "tool", "assistant" }));
        Assert.That(Conversation.ContentText((JsonObject)chat[0]!), Is.EqualTo("Weather in Paris?"), "text parts");
        Assert.That(((JsonObject)chat[1]!).ContainsKey("content"), Is.False, "a null content is dropped");
        Assert.That(chat[1]!["tool_calls"]![0]!["function"]!["name"]!.GetValue<string>(), Is.EqualTo("get_weather"));
        Assert.That(chat[2]!["tool_call_id"]!.GetValue<string>(), Is.EqualTo("call_1"));
        Assert.That(examples[1].Tools![0]!["function"]!["name"]!.GetValue<string>(), Is.EqualTo("get_weather"));
    }

    [Test]
    public void ShareGptJsonArrayMapsSpeakersToRoles()
    {
        var rows = DatasetReader.Read(File("sharegpt.json"));
        Assert.That(rows.Select(r => r.Location), Is.EqualTo(new[] { "row 0", "row 1" }));
        Assert.That(DatasetExamples.Detect(rows), Is.EqualTo(DatasetFormat.ShareGpt));
        var examples = DatasetExamples.FromRows(rows);
        Assert.That(Roles(examples[0].Messages!), Is.EqualTo(new[] { "user", "assistant", "user", "assistant" }));
        var chat = examples[1].Messages!;
        Assert.That(Roles(chat), Is.EqualTo(new[] { "system", "user", "assistant", "tool", "assistant" }));
        Assert.That(chat[0]!["content"]!.GetValue<string>(), Is.EqualTo("You can call tools."));
        var call = chat[2]!["tool_calls"]![0]!;
        Assert.That(call["function"]!["name"]!.GetValue<string>(), Is.EqualTo("add"));
        Assert.That(call["function"]!["arguments"]!["b"]!.GetValue<int>(), Is.EqualTo(5));
        Assert.That(chat[3]!["content"]!.GetValue<string>(), Is.EqualTo("7"));
        Assert.That(examples[1].Tools![0]!["name"]!.GetValue<string>(), Is.EqualTo("add"), "tools parsed from a JSON string");
    }

    [Test]
    public void AlpacaInsideAnObjectBecomesAConversation()
    {
        var rows = DatasetReader.Read(File("alpaca.json"));
        Assert.That(rows[1].Location, Is.EqualTo("\"data\" row 1"));
        var examples = DatasetExamples.FromRows(rows);
        Assert.That(Roles(examples[0].Messages!), Is.EqualTo(new[] { "user", "assistant" }));
        Assert.That(examples[0].Messages![0]!["content"]!.GetValue<string>(), Is.EqualTo("Translate to French.\n\nGood morning"));
        Assert.That(examples[0].Messages![1]!["content"]!.GetValue<string>(), Is.EqualTo("Bonjour"));
        Assert.That(Roles(examples[1].Messages!), Is.EqualTo(new[] { "system", "user", "assistant" }));
        Assert.That(examples[1].Messages![1]!["content"]!.GetValue<string>(), Is.EqualTo("Name a primary colour."), "empty input adds nothing");
    }

    [Test]
    public void PromptCompletionStringsAndConversational()
    {
        var plain = DatasetExamples.Load(File("prompt_completion.jsonl"));
        Assert.That(plain[0].Kind, Is.EqualTo(ExampleKind.PromptCompletion));
        Assert.That((plain[0].Prompt, plain[0].Completion), Is.EqualTo(("The capital of France is", " Paris.")));
        var chat = DatasetExamples.Load(File("prompt_completion_chat.jsonl"));
        Assert.That(chat[0].Kind, Is.EqualTo(ExampleKind.ConversationalPromptCompletion));
        Assert.That(Roles(chat[0].Messages!), Is.EqualTo(new[] { "system", "user" }));
        Assert.That(Roles(chat[0].CompletionMessages!), Is.EqualTo(new[] { "assistant" }));
    }

    [Test]
    public void MessagesParquetWithNestedListOfStructs()
    {
        var rows = DatasetReader.Read(File("messages.parquet"));
        Assert.That(rows.Select(r => r.Location), Is.EqualTo(new[] { "row 0", "row 1" }));
        var examples = DatasetExamples.FromRows(rows);
        for (var i = 0; i < ParquetDatasets.MessageRows.Length; i++)
        {
            var expected = ParquetDatasets.MessageRows[i];
            Assert.That(rows[i].Data["id"]!.GetValue<string>(), Is.EqualTo(expected.Id));
            var messages = examples[i].Messages!;
            Assert.That(messages.Select(m => (Conversation.Role((JsonObject)m!)!, m!["content"]!.GetValue<string>())), Is.EqualTo(expected.Messages));
        }
    }

    [Test]
    public void TextParquet()
    {
        var examples = DatasetExamples.Load(File("text.parquet"));
        Assert.That(examples.Select(e => e.Text), Is.EqualTo(ParquetDatasets.TextRows));
    }

    [Test]
    public void ForcedFormatOverridesDetection()
    {
        // A messages row read as text: the forced format is used (and fails on the missing field, naming it).
        var e = Assert.Throws<InvalidDataException>(() => DatasetExamples.Load(File("messages.jsonl"), DatasetFormat.Text))!;
        Assert.That(e.Message, Does.Contain("messages.jsonl: line 1: field \"text\": missing"));
    }

    /// <summary>Writes the committed Parquet files (run explicitly after changing <see cref="ParquetDatasets"/>).</summary>
    [Test, Explicit("writes tests/data/datasets/*.parquet in the source tree")]
    public void RegenerateParquetFiles()
    {
        var dir = AppContext.BaseDirectory;
        while (!System.IO.File.Exists(Path.Combine(dir, "SlothSharp.slnx"))) dir = Path.GetDirectoryName(dir) ?? throw new InvalidOperationException("repository root not found");
        var target = Path.Combine(dir, "tests", "data", "datasets");
        ParquetDatasets.WriteMessages(Path.Combine(target, "messages.parquet"), ParquetDatasets.MessageRows);
        ParquetDatasets.WriteText(Path.Combine(target, "text.parquet"), ParquetDatasets.TextRows);
    }
}
