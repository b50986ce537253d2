using System.Collections.Concurrent;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Tokenization;

namespace SlothSharp.Tests;

/// <summary>
/// HfTokenizer on the real tokenizer.json files of seven model families (tests/data/tokenizers/&lt;name&gt;/), against
/// the ids, ids with special tokens and decoded text that Hugging Face tokenizers/transformers give for every document
/// of tests/data/tokenizers/corpus.jsonl (tools/hf/tokenizer_reference.py wrote tests/data/tokenizers/expected/).
/// </summary>
public class TokenizerFamilyTests
{
    public static readonly string[] Families = ["llama3", "llama3_1", "llama2", "qwen3", "gemma3", "deepseek_v3", "gptoss"];

    private static readonly ConcurrentDictionary<string, HfTokenizer> Loaded = new();

    /// <summary>Loads a family once per test run (Gemma's file takes seconds to parse), from the gzipped copy.</summary>
    internal static HfTokenizer Load(string name) => Loaded.GetOrAdd(name, n =>
    {
        var dir = Path.Combine(TokenizerCorpus.Dir, n);
        using var json = new GZipStream(File.OpenRead(Path.Combine(dir, "tokenizer.json.gz")), CompressionMode.Decompress);
        using var config = File.OpenRead(Path.Combine(dir, "tokenizer_config.json"));
        return HfTokenizer.FromStreams(json, config, $"{n}/tokenizer.json");
    });

    private static JsonNode Expected(string name)
    {
        var path = Path.Combine(TokenizerCorpus.Dir, "expected", name + ".json.gz");
        Assert.That(File.Exists(path), Is.True, $"{path}: missing (run tools/hf/tokenizer_reference.py where tokenizers is installed)");
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        var json = JsonNode.Parse(gz)!;
        var corpusHash = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(TokenizerCorpus.Dir, "corpus.jsonl"))));
        Assert.That((string?)json["corpus_sha256"], Is.EqualTo(corpusHash), $"{path} was made from another version of corpus.jsonl");
        return json;
    }

    private static int[] Ids(JsonNode? node) => node!.AsArray().Select(v => (int)v!).ToArray();

    /// <summary>
    /// Documents whose <c>ids_special</c> from transformers 5.17 (the reference) are not tokenizers' ids plus the added
    /// special tokens, because AutoTokenizer rebuilt the pipeline for <c>tokenizer_class: LlamaTokenizer(Fast)</c>
    /// instead of using tokenizer.json (the reference then also wrote its own <c>ids_plain_transformers</c>):
    /// Llama 2 gets a Metaspace-style pipeline that treats leading spaces and text after special tokens differently
    /// from tokenizer.json's Prepend normalizer; DeepSeek V3's byte-level file is read as a SentencePiece one (the
    /// ids are garbled, and no BOS is added). HfTokenizer follows tokenizer.json (tokenizers' ids) and, for
    /// DeepSeek V3, transformers 4's LlamaTokenizerFast (add_bos_token: BOS first).
    /// </summary>
    private static readonly Dictionary<string, int[]?> TransformersRebuilds = new()
    {
        ["llama2"] = [25, 27, 28, 33, 35, 41, 60, 63, 97, 103, 105, 117],
        ["deepseek_v3"] = null,  // every document
    };

    [TestCaseSource(nameof(Families))]
    public void EveryDocumentMatchesHuggingFace(string name)
    {
        var tok = Load(name);
        var expected = Expected(name);
        var corpus = TokenizerCorpus.Read().ToDictionary(d => d.Line, d => d.Text);
        var documents = expected["documents"]!.AsArray();
        Assert.That(documents, Has.Count.EqualTo(corpus.Count), "one result per document");
        var failures = new List<string>();
        var rebuilt = new List<int>();
        var compared = 0;
        foreach (var doc in documents)
        {
            var line = (int)doc!["line"]!;
            var text = corpus[line];
            if (doc["skipped"] is not null)
            {
                // Lone surrogates: Rust strings cannot hold them; here they must only not throw.
                Assert.DoesNotThrow(() => tok.EncodeWithSpecialTokens(text), $"line {line}");
                continue;
            }
            compared++;
            var plain = tok.Encode(text);
            if (!plain.SequenceEqual(Ids(doc["ids_plain"]))) failures.Add($"line {line}: ids_plain");
            if (tok.Decode(Ids(doc["ids_plain"]), skipSpecialTokens: false) != (string)doc["decoded"]!) failures.Add($"line {line}: decoded");
            var special = tok.EncodeWithSpecialTokens(text);
            if (special.SequenceEqual(Ids(doc["ids_special"]))) continue;
            if (TransformersRebuilds.ContainsKey(name))
            {
                rebuilt.Add(line);
                // Where transformers' own ids differ, what it adds around them must still be what HfTokenizer adds.
                if (name != "deepseek_v3" && !Ids(doc["ids_special"]).SequenceEqual([.. tok.SpecialPrefixIds, .. Ids(doc["ids_plain_transformers"]), .. tok.SpecialSuffixIds]))
                    failures.Add($"line {line}: ids_special around transformers' ids");
            }
            else failures.Add($"line {line}: ids_special");
        }
        Assert.That(compared, Is.GreaterThan(100));
        Assert.That(failures, Is.Empty, $"{name}: {failures.Count} differences");
        if (TransformersRebuilds.TryGetValue(name, out var lines))
            Assert.That(rebuilt, Is.EqualTo(lines ?? documents.Where(d => d!["skipped"] is null).Select(d => (int)d!["line"]!).ToArray()),
                "the documents where transformers 5.17 rebuilds the pipeline");
        else Assert.That(rebuilt, Is.Empty);
    }

    [TestCaseSource(nameof(Families))]
    public void BatchEncodingEqualsOneByOne(string name)
    {
        var tok = Load(name);
        var texts = TokenizerCorpus.Read().Select(d => d.Text).ToList();
        var batch = tok.EncodeBatch(texts, addSpecialTokens: true, maxDegreeOfParallelism: 2);
        Assert.That(batch, Has.Length.EqualTo(texts.Count));
        for (var i = 0; i < texts.Count; i++) Assert.That(batch[i], Is.EqualTo(tok.EncodeWithSpecialTokens(texts[i])), $"document {i}");
    }

    [TestCaseSource(nameof(Families))]
    public void LoneSurrogatesAndNoncharactersDoNotThrow(string name)
    {
        var tok = Load(name);
        string[] texts = ["\ud800", "a\udc00b", "\udc00\ud800", "x\uFFFEy", "\uFFFE", "e\u0301\uFFFE\u0301", "\uFFFF\uFDD0"];
        foreach (var t in texts)
        {
            var ids = tok.Encode(t);
            Assert.That(ids, Is.Not.Empty, $"'{t}'");
            Assert.DoesNotThrow(() => tok.Decode(ids, skipSpecialTokens: false));
        }
        // A lone surrogate is read as U+FFFD, what .NET's UTF-8 encoder (and Python's "replace" error handler) write.
        Assert.That(tok.Encode("a\ud800b"), Is.EqualTo(tok.Encode("a\uFFFDb")));
    }

    /// <summary>What each family adds with special tokens, as transformers' tokenizer classes do.</summary>
    [Test]
    public void SpecialTokensAddedAsTransformersDoes()
    {
        Assert.That(Load("llama2").SpecialPrefixIds, Is.EqualTo(new[] { 1 }), "LlamaTokenizer: add_bos_token");
        Assert.That(Load("gemma3").SpecialPrefixIds, Is.EqualTo(new[] { 2 }), "GemmaTokenizer: <bos>");
        Assert.That(Load("deepseek_v3").SpecialPrefixIds, Is.EqualTo(new[] { Load("deepseek_v3").TokenToId("<｜begin▁of▁sentence｜>")!.Value }),
            "LlamaTokenizerFast with add_bos_token although tokenizer.json's post-processor adds nothing");
        Assert.That(Load("qwen3").SpecialPrefixIds, Is.Empty, "Qwen adds nothing");
        Assert.That(Load("qwen3").BosTokenId, Is.Null, "bos_token: null");
        foreach (var f in Families) Assert.That(Load(f).SpecialSuffixIds, Is.Empty, $"{f}: no add_eos_token");
    }

    [Test]
    public void SentencePieceStyleDetails()
    {
        var llama2 = Load("llama2");
        // byte_fallback: a character outside the vocabulary becomes its UTF-8 bytes as <0xNN> tokens.
        var ids = llama2.Encode("\U0001F9A5");  // 🦥 (U+1F9A5) is not in Llama 2's vocabulary
        Assert.That(ids.Select(i => llama2.IdToToken(i)), Is.EqualTo(new[] { "▁", "<0xF0>", "<0x9F>", "<0xA6>", "<0xA5>" }));
        Assert.That(llama2.Decode(ids), Is.EqualTo("\U0001F9A5"), "ByteFallback + Strip decoders");
        // Prepend('▁') applies to every piece between special tokens.
        Assert.That(llama2.Encode("<s>hi").Select(i => llama2.IdToToken(i)), Is.EqualTo(new[] { "<s>", "▁hi" }));
        var gemma = Load("gemma3");
        // Gemma's newline runs are added tokens (normalized: false), matched in the raw text before ' ' → '▁'.
        var nl = gemma.TokenToId("\n\n")!.Value;
        Assert.That(gemma.Encode("a\n\nb"), Does.Contain(nl));
        Assert.That(gemma.Decode(gemma.Encode(" two  spaces ")), Is.EqualTo(" two  spaces "));
    }

    [Test]
    public void StreamingDecodeOfSentencePieceTokens()
    {
        var llama2 = Load("llama2");
        const string text = "Héllo 😀 wörld 🦥";
        var stream = new StreamingTextDecoder(llama2);
        var sb = new System.Text.StringBuilder();
        foreach (var id in llama2.Encode(text)) sb.Append(stream.Push(id));
        sb.Append(stream.Flush());
        Assert.That(sb.ToString(), Is.EqualTo(llama2.Decode(llama2.Encode(text))));
        Assert.That(sb.ToString(), Is.EqualTo(text));
    }
}
