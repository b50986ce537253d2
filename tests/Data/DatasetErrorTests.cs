using NUnit.Framework;
using SlothSharp.Data;

namespace SlothSharp.Tests.Data;

/// <summary>Every bad input fails with the file, the row (line for .jsonl, index for .json/.parquet) and the field.</summary>
public class DatasetErrorTests() : TempDirFixture("datasets")
{
    private string Write(string name, string content)
    {
        var path = Path.Combine(Dir, name);
        System.IO.File.WriteAllText(path, content);
        return path;
    }

    private static string Fails(string path, DatasetFormat format = DatasetFormat.Auto) =>
        Assert.Throws<InvalidDataException>(() => DatasetExamples.Load(path, format))!.Message;

    [Test]
    public void ReaderErrorsNameFileAndLineOrRow()
    {
        var bad = Path.Combine(Dir, "bad.jsonl");
        System.IO.File.WriteAllBytes(bad, [.. "{\"text\": \"ok\"}\n{\"text\": \""u8, 0xC3, 0x28, .. "\"}\n"u8]);
        Assert.That(Fails(bad), Does.Contain("bad.jsonl: line 2: invalid UTF-8"));
        Assert.That(Fails(Write("json.jsonl", "{\"text\": \"a\"}\n{\"text\": \n")), Does.Contain("json.jsonl: line 2: not valid JSON"));
        Assert.That(Fails(Write("arr.jsonl", "[1, 2]\n")), Does.Contain("arr.jsonl: line 1: expected a JSON object, found an array"));
        Assert.That(Fails(Write("two.json", "{\"a\": [], \"b\": []}")), Does.Contain("two.json: a top-level object must hold exactly one array"));
        Assert.That(Fails(Write("row.json", "[{\"text\": \"a\"}, 3]")), Does.Contain("row.json: row 1: expected a JSON object, found a number"));
        var badJson = Path.Combine(Dir, "bad.json");
        System.IO.File.WriteAllBytes(badJson, [.. "[{\"text\": \"a\"},\n {\"text\": \""u8, 0xFF, .. "\"}]"u8]);
        Assert.That(Fails(badJson), Does.Contain("bad.json: line 2: invalid UTF-8"));
        Assert.That(Fails(Write("x.parquet", "not parquet at all")), Does.Contain("x.parquet: not a readable Parquet file"));
        Assert.That(Fails(Write("empty.jsonl", "\n\n")), Does.Contain("empty.jsonl: no rows"));
        Assert.That(Fails(Write("x.csv", "a,b")), Does.Contain("unknown extension '.csv'"));
    }

    [Test]
    public void DetectionErrorsNameTheRow()
    {
        Assert.That(Fails(Write("none.jsonl", "{\"foo\": 1}\n")), Does.Contain("none.jsonl: line 1: the fields (\"foo\") match no dataset format"));
        Assert.That(Fails(Write("mixed.jsonl", "{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n")),
            Does.Contain("mixed.jsonl: line 2: looks like PromptCompletion but line 1 looks like Text"));
    }

    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"robot\", \"content\": \"b\"}]}", "field \"messages[1].role\": unknown role \"robot\"")]
    [TestCase("{\"messages\": [{\"content\": \"a\"}]}", "field \"messages[0].role\": missing")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": 5}, {\"role\": \"assistant\", \"content\": \"b\"}]}", "field \"messages[0].content\": must be a string or a list of text parts, not a number")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}]}, {\"role\": \"assistant\", \"content\": \"b\"}]}", "field \"messages[0].content[0].type\": \"image\" parts are not supported")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}, {\"role\": \"assistant\", \"content\": \"c\"}]}", "field \"messages[1].role\": turns must alternate: \"user\" after a \"user\" message (messages[0]); expected \"assistant\"")]
    [TestCase("{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}]}", "field \"messages[0].role\": turns must alternate: \"assistant\" at the start; expected \"user\"")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"system\", \"content\": \"s\"}]}", "field \"messages[1].role\": a system message must come first")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}", "field \"messages[0].role\": the conversation must end with an assistant reply")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"arguments\": \"{}\"}}]}, {\"role\": \"tool\", \"content\": \"r\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}", "field \"messages[1].tool_calls[0].function.name\": must be a non-empty string")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\"}}]}, {\"role\": \"user\", \"content\": \"r\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}", "field \"messages[2].role\": turns must alternate: \"user\" after an assistant message with tool_calls (messages[1]); expected \"tool\"")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\"}]}", "field \"messages[1].content\": missing")]
    [TestCase("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}], \"tools\": \"not json\"}", "field \"tools\": not valid JSON")]
    [TestCase("{\"conversations\": [{\"from\": \"alien\", \"value\": \"a\"}]}", "field \"conversations[0].from\": unknown speaker \"alien\"")]
    [TestCase("{\"conversations\": [{\"from\": \"human\"}]}", "field \"conversations[0].value\": missing")]
    [TestCase("{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, {\"from\": \"function_call\", \"value\": \"nope\"}]}", "field \"conversations[1].value\": a function_call must be JSON")]
    [TestCase("{\"instruction\": \"a\", \"output\": 3}", "field \"output\": must be a string, not a number")]
    [TestCase("{\"prompt\": \"a\", \"completion\": [{\"role\": \"assistant\", \"content\": \"b\"}]}", "field \"completion\": must be a string like the prompt, not an array")]
    [TestCase("{\"prompt\": [{\"role\": \"user\", \"content\": \"a\"}], \"completion\": [{\"role\": \"user\", \"content\": \"b\"}]}", "field \"completion[0].role\": a completion holds assistant messages only")]
    [TestCase("{\"prompt\": \"a\", \"completion\": \"\"}", "field \"completion\": empty")]
    public void RowErrorsNameFileRowAndField(string secondLine, string expected)
    {
        // Line 1 is valid in the same format, so the error must point at line 2.
        var first = secondLine.Contains("\"conversations\"") ? "{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"r\"}]}"
            : secondLine.Contains("\"instruction\"") ? "{\"instruction\": \"q\", \"output\": \"r\"}"
            : secondLine.Contains("\"prompt\"") ? "{\"prompt\": \"q\", \"completion\": \"r\"}"
            : "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"r\"}]}";
        var format = first.Contains("\"conversations\"") ? DatasetFormat.ShareGpt : DatasetFormat.Auto;
        var path = Write("rows.jsonl", first + "\n" + secondLine + "\n");
        Assert.That(Fails(path, format), Does.Contain($"rows.jsonl: line 2: {expected}"));
    }

    [Test]
    public void ParquetRowErrorsNameTheRowIndexAndField()
    {
        var path = Path.Combine(Dir, "chat.parquet");
        ParquetDatasets.WriteMessages(path, [("ok", [("user", "a"), ("assistant", "b")]), ("bad", [("user", "a"), ("narrator", "b")])]);
        Assert.That(Fails(path), Does.Contain("chat.parquet: row 1: field \"messages[1].role\": unknown role \"narrator\""));
    }

    [Test]
    public void JsonArrayRowErrorsNameTheIndex()
    {
        var path = Write("alpaca.json", "{\"rows\": [{\"instruction\": \"a\", \"output\": \"b\"}, {\"instruction\": \"a\"}]}");
        Assert.That(Fails(path), Does.Contain("alpaca.json: \"rows\" row 1: field \"output\": missing"));
    }
}
