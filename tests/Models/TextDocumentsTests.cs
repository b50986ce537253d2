using System.Text;
using NUnit.Framework;
using SlothSharp.Data;

namespace SlothSharp.Tests;

public class TextDocumentsTests() : TempDirFixture("docs")
{
    private string Write(string name, string content) => WriteBytes(name, Encoding.UTF8.GetBytes(content));

    private string WriteBytes(string name, byte[] content)
    {
        var path = Path.Combine(Dir, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    private static void ExpectError(string path, params string[] fragments)
    {
        var e = Assert.Throws<InvalidDataException>(() => TextDocuments.Read(path))!;
        Assert.That(e.Message, Does.Contain(path));
        foreach (var f in fragments) Assert.That(e.Message, Does.Contain(f));
    }

    [Test]
    public void ReadsJsonl()
    {
        var path = Write("d.jsonl", "{\"text\": \"first\", \"id\": 1}\n\n  \n{\"text\": \"second\\nline \\u00e9 😀\"}\r\n{\"text\": \"\"}");
        Assert.That(TextDocuments.Read(path), Is.EqualTo(new[] { "first", "second\nline é 😀", "" }));
    }

    [Test]
    public void ReadsTxtOneDocumentPerNonEmptyLine()
    {
        var path = WriteBytes("d.txt", [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("alpha beta\r\n\r\n   \ngamma\tδ\n")]);
        Assert.That(TextDocuments.Read(path), Is.EqualTo(new[] { "alpha beta", "gamma\tδ" }));
    }

    [Test]
    public void ErrorsNameTheFileAndLine()
    {
        ExpectError(Write("a.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"broken\"\n"), "line 2", "not valid JSON");
        ExpectError(Write("b.jsonl", "{\"text\": \"ok\"}\n\n{\"body\": \"x\"}\n"), "line 3", "\"text\" is missing");
        ExpectError(Write("c.jsonl", "{\"text\": 5}\n"), "line 1", "must be a string");
        ExpectError(Write("d.jsonl", "[\"text\"]\n"), "line 1", "JSON object");
        ExpectError(WriteBytes("e.txt", [.. "fine\n"u8, 0x61, 0xFF, 0x62, (byte)'\n']), "line 2", "invalid UTF-8");
        ExpectError(Write("f.jsonl", ""), "no documents");
        ExpectError(Write("g.txt", "\n\n  \n"), "no documents");
        ExpectError(Write("h.csv", "text\nx\n"), "unknown extension", ".csv");
        Assert.Throws<FileNotFoundException>(() => TextDocuments.Read(Path.Combine(Dir, "missing.jsonl")));
    }
}
