using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Tokenization;

namespace SlothSharp.Tests;

/// <summary>Unsupported or malformed tokenizer files give errors that name the file and the field.</summary>
public class TokenizerErrorTests() : TempDirFixture("tok")
{
    private static JsonNode Golden() => JsonNode.Parse(File.ReadAllText(Path.Combine(TestEnv.TinyLlamaDir, "nf4", "tokenizer.json")))!;

    private string Write(JsonNode json, string? config = null)
    {
        File.WriteAllText(Path.Combine(Dir, "tokenizer.json"), json.ToJsonString());
        if (config is not null) File.WriteAllText(Path.Combine(Dir, "tokenizer_config.json"), config);
        return Dir;
    }

    private static void ExpectError(string dir, params string[] fragments)
    {
        var e = Assert.Throws<InvalidDataException>(() => HfTokenizer.FromDirectory(dir))!;
        foreach (var f in fragments) Assert.That(e.Message, Does.Contain(f));
    }

    [Test]
    public void MissingFilesAreNamed()
    {
        var e = Assert.Throws<FileNotFoundException>(() => HfTokenizer.FromDirectory(Dir))!;
        Assert.That(e.Message, Does.Contain("tokenizer.json"));
        Assert.Throws<DirectoryNotFoundException>(() => HfTokenizer.FromDirectory(Path.Combine(Dir, "nope")));
        File.WriteAllText(Path.Combine(Dir, "tokenizer.json"), "{ not json");
        ExpectError(Dir, "tokenizer.json", "not valid JSON");
    }

    [Test]
    public void SentencePieceStyleTokenizersAreRejected()
    {
        var unigram = Golden();
        unigram["model"] = new JsonObject { ["type"] = "Unigram", ["vocab"] = new JsonArray() };
        ExpectError(Write(unigram), "tokenizer.json", "model.type", "Unigram");

        var llama2 = Golden();
        llama2["model"]!["byte_fallback"] = true;
        ExpectError(Write(llama2), "model.byte_fallback");

        var metaspace = Golden();
        metaspace["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁" };
        ExpectError(Write(metaspace), "pre_tokenizer.type", "Metaspace");

        var normalizer = Golden();
        normalizer["normalizer"] = new JsonObject { ["type"] = "NFC" };
        ExpectError(Write(normalizer), "normalizer", "NFC");
    }

    [Test]
    public void MalformedFieldsAreNamed()
    {
        var badMerge = Golden();
        badMerge["model"]!["merges"]!.AsArray().Add(new JsonArray("Ġ", "zzz"));
        ExpectError(Write(badMerge), "model.merges[161]", "zzz");

        var badRegex = JsonNode.Parse(File.ReadAllText(Path.Combine(TestEnv.DataDir, "llama3-style-tokenizer", "tokenizer.json")))!;
        badRegex["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = "(unclosed";
        ExpectError(Write(badRegex), "pre_tokenizer.pretokenizers[0].pattern");

        var noVocab = Golden();
        noVocab["model"]!.AsObject().Remove("vocab");
        ExpectError(Write(noVocab), "model.vocab");

        ExpectError(Write(Golden(), "{\"bos_token\": \"<|nope|>\"}"), "tokenizer_config.json", "bos_token", "<|nope|>");
        ExpectError(Write(Golden(), "{\"add_bos_token\": \"yes\"}"), "tokenizer_config.json", "add_bos_token");
    }

    [Test]
    public void MergesAsStringsOrPairsAreTheSame()
    {
        var pairs = Golden();
        var strings = Golden();
        var list = new JsonArray();
        foreach (var m in pairs["model"]!["merges"]!.AsArray()) list.Add($"{(string)m![0]!} {(string)m[1]!}");
        strings["model"]!["merges"] = list;
        var a = HfTokenizer.FromFile(Path.Combine(Write(pairs), "tokenizer.json")).Encode("Return a new dictionary");
        var b = HfTokenizer.FromFile(Path.Combine(Write(strings), "tokenizer.json")).Encode("Return a new dictionary");
        Assert.That(a, Is.EqualTo(b));
        Assert.That(a.Length, Is.LessThan("Return a new dictionary".Length), "merges applied");
    }
}
