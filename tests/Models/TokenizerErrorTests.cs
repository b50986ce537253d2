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
    public void UnsupportedComponentsAreRejected()
    {
        // None of the supported families (Llama 2/3, Qwen, Gemma, DeepSeek, GPT-OSS) uses a Unigram model.
        var unigram = Golden();
        unigram["model"] = new JsonObject { ["type"] = "Unigram", ["vocab"] = new JsonArray() };
        ExpectError(Write(unigram), "tokenizer.json", "model.type", "Unigram");

        var normalizer = Golden();
        normalizer["normalizer"] = new JsonObject { ["type"] = "Sequence", ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "NFC" }, new JsonObject { ["type"] = "Precompiled" }) };
        ExpectError(Write(normalizer), "tokenizer.json", "normalizer.normalizers[1].type", "Precompiled");

        var pre = Golden();
        pre["pre_tokenizer"] = new JsonObject { ["type"] = "UnicodeScripts" };
        ExpectError(Write(pre), "pre_tokenizer.type", "UnicodeScripts");

        var decoder = Golden();
        decoder["decoder"] = new JsonObject { ["type"] = "CTC" };
        ExpectError(Write(decoder), "decoder.type", "CTC");

        var post = Golden();
        post["post_processor"] = new JsonObject { ["type"] = "Sequence", ["processors"] = new JsonArray(new JsonObject { ["type"] = "Mystery" }) };
        ExpectError(Write(post), "post_processor.processors[0].type", "Mystery");

        var scheme = Golden();
        scheme["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "sometimes" };
        ExpectError(Write(scheme), "pre_tokenizer.prepend_scheme", "sometimes");
    }

    [Test]
    public void JsonTextAndStreamsNameTheirSource()
    {
        var json = Golden();
        json["normalizer"] = new JsonObject { ["type"] = "BertNormalizer" };
        var e = Assert.Throws<InvalidDataException>(() => HfTokenizer.FromJson(json.ToJsonString(), sourceName: "my/tokenizer.json"))!;
        Assert.That(e.Message, Does.Contain("my/tokenizer.json").And.Contain("normalizer.type").And.Contain("BertNormalizer"));
        using var stream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes("[1, 2]"));
        e = Assert.Throws<InvalidDataException>(() => HfTokenizer.FromStreams(stream, sourceName: "s.json"))!;
        Assert.That(e.Message, Does.Contain("s.json").And.Contain("(root)"));
        var ok = HfTokenizer.FromJson(Golden().ToJsonString(), "{\"eos_token\": \"<|end_of_text|>\"}");
        Assert.That(ok.EosTokenId, Is.EqualTo(1));
    }

    [Test]
    public void SentencePieceStyleComponentsAreAccepted()
    {
        // Llama 2's layout on the golden vocabulary: Prepend + Replace normalizers, byte_fallback, the
        // Replace/ByteFallback/Fuse/Strip decoder chain. Characters the vocabulary lacks are dropped (no <0xNN>
        // tokens, no unk_token), the rest round-trips.
        var llama2Like = Golden();
        llama2Like["normalizer"] = JsonNode.Parse("""{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"Ġ"},{"type":"Replace","pattern":{"String":" "},"content":"Ġ"}]}""");
        llama2Like["pre_tokenizer"] = null;
        llama2Like["model"]!["byte_fallback"] = true;
        llama2Like["decoder"] = JsonNode.Parse("""{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"Ġ"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}""");
        var tok = HfTokenizer.FromFile(Path.Combine(Write(llama2Like), "tokenizer.json"));
        var ids = tok.Encode("the lazy dog");
        Assert.That(tok.IdToToken(ids[0]), Does.StartWith("Ġ"), "Prepend");
        Assert.That(tok.Decode(ids), Is.EqualTo("the lazy dog"));
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
