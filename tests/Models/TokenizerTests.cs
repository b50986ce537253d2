using System.Text;
using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Tokenization;

namespace SlothSharp.Tests;

/// <summary>HfTokenizer against the golden ids written by transformers, an independent reference implementation of
/// byte-level BPE (TokenizerReference) and, when present, Hugging Face tokenizers' ids for the mixed text.</summary>
public class TokenizerTests
{
    private static string TinyDir => Path.Combine(TestEnv.TinyLlamaDir, "nf4");
    private static string Llama3StyleDir => Path.Combine(TestEnv.DataDir, "llama3-style-tokenizer");
    private static string MixedText => File.ReadAllText(Path.Combine(TestEnv.TinyLlamaDir, "tokenizer-mixed.txt"), new UTF8Encoding(false, true));

    public static readonly string[] TokenizerNames = ["hf-tiny-llama", "llama3-style"];

    private static string DirOf(string name) => name == "hf-tiny-llama" ? TinyDir : Llama3StyleDir;

    /// <summary>Lines of a text split after each "\n" (each keeps its newline), as tools/hf/tokenize_check.py does.</summary>
    internal static List<string> LinesOf(string text)
    {
        var lines = new List<string>();
        var start = 0;
        for (var i = 0; i < text.Length; i++)
            if (text[i] == '\n') { lines.Add(text[start..(i + 1)]); start = i + 1; }
        if (start < text.Length) lines.Add(text[start..]);
        return lines;
    }

    [Test]
    public void GoldenTextsGiveTransformersInputIds()
    {
        var tok = HfTokenizer.FromDirectory(TinyDir);
        var expected = LlamaGolden.ExpectedJson;
        using var r = new SafetensorsReader(LlamaGolden.ExpectedFile);
        using var ids = r.Read("input_ids");
        using var mask = r.Read("attention_mask");
        var texts = expected["texts"]!.AsArray().Select(t => (string)t!).ToArray();
        Assert.That(texts, Has.Length.EqualTo(2));
        for (var row = 0; row < texts.Length; row++)
        {
            var length = (int)mask[row].sum().item<long>();
            var want = ids[row].data<long>().Take(length).Select(v => (int)v).ToArray();
            Assert.That(tok.Encode(texts[row], addBos: true), Is.EqualTo(want), $"text {row}");
            Assert.That(tok.Decode(want), Is.EqualTo(texts[row]), $"decode {row}");
        }
        Assert.That(tok.Encode(texts[0]), Is.EqualTo(tok.Encode(texts[0], addBos: true).Skip(1)), "addBos only adds BOS");
    }

    [Test]
    public void SpecialIdsComeFromTokenizerConfig()
    {
        var tiny = HfTokenizer.FromDirectory(TinyDir);
        Assert.That((tiny.BosTokenId, tiny.EosTokenId, tiny.PadTokenId, tiny.VocabSize), Is.EqualTo(((int?)0, (int?)1, (int?)2, 420)));
        Assert.That(tiny.AddsBosByDefault, Is.False, "its post-processor adds nothing");
        var l3 = HfTokenizer.FromDirectory(Llama3StyleDir);
        Assert.That(l3.BosTokenId, Is.EqualTo(l3.TokenToId("<|begin_of_text|>")));
        Assert.That(l3.EosTokenId, Is.EqualTo(l3.TokenToId("<|eot_id|>")));
        Assert.That(l3.PadTokenId, Is.Null);
        Assert.That(l3.AddsBosByDefault, Is.True, "the TemplateProcessing post-processor adds BOS");
        var fromFile = HfTokenizer.FromFile(Path.Combine(Llama3StyleDir, "tokenizer.json"));
        Assert.That((fromFile.BosTokenId, fromFile.EosTokenId), Is.EqualTo((l3.BosTokenId, (int?)null)));
    }

    [TestCaseSource(nameof(TokenizerNames))]
    public void MixedTextMatchesTheReferenceImplementation(string name)
    {
        var tok = HfTokenizer.FromDirectory(DirOf(name));
        var reference = new TokenizerReference(Path.Combine(DirOf(name), "tokenizer.json"));
        var text = MixedText;
        Assert.That(text.Length, Is.GreaterThan(3000));
        var ids = tok.Encode(text);
        Assert.That(ids, Is.EqualTo(reference.Encode(text)), "whole text");
        foreach (var line in LinesOf(text)) Assert.That(tok.Encode(line), Is.EqualTo(reference.Encode(line)), $"line {line}");
        Assert.That(tok.Decode(ids, skipSpecialTokens: false), Is.EqualTo(text), "decode(encode(text)) == text");
    }

    [TestCaseSource(nameof(TokenizerNames))]
    public void RandomStringsMatchTheReferenceImplementation(string name)
    {
        var tok = HfTokenizer.FromDirectory(DirOf(name));
        var reference = new TokenizerReference(Path.Combine(DirOf(name), "tokenizer.json"));
        // Pieces that stress the split pattern when glued at random: contractions, runs of spaces/newlines, digits,
        // letters of several scripts, astral letters/digits, emoji with joiners, special tokens.
        string[] pool = ["'s", "'S", "'ll", "'re", "'ſ", "'", " ", "  ", "\t", "\n", "\r\n", "\r", " \n ", "\u00a0", "\u3000", "a", "Z", "é", "e\u0301",
            "ß", "я", "中", "文", "한", "ア", "1", "23", "4567", "٣", "½", "Ⅻ", "𝟙", "𝐀", "𠀀", "😀", "👩‍👩‍👧", "🇫🇷", "\ufe0f", "!", "...", "—", "\"", "(", "{",
            "<|end_of_text|>", "<|pad|>", "<|eot_id|>", "<|begin_of_text|>", "<|", "|>", "don't", "Hello", " lazy", " dog", "the", " the", "ing"];
        var rng = new Random(1234);
        for (var k = 0; k < 400; k++)
        {
            var sb = new StringBuilder();
            var n = rng.Next(1, 16);
            for (var i = 0; i < n; i++) sb.Append(pool[rng.Next(pool.Length)]);
            var s = sb.ToString();
            Assert.That(tok.Encode(s), Is.EqualTo(reference.Encode(s)), $"'{s}'");
            Assert.That(tok.Decode(tok.Encode(s), skipSpecialTokens: false), Is.EqualTo(s), $"round trip '{s}'");
        }
    }

    /// <summary>Hugging Face tokenizers' own ids, written by tools/hf/tokenize_check.py on a machine that has the
    /// package (the GPU machine). Until that file is committed this test is inconclusive, not passed.</summary>
    [TestCaseSource(nameof(TokenizerNames))]
    public void MixedTextMatchesHuggingFaceTokenizers(string name)
    {
        var path = Path.Combine(TestEnv.TinyLlamaDir, "tokenizer-mixed-expected.json");
        Assume.That(File.Exists(path), $"{path} not present: run tools/hf/tokenize_check.py where tokenizers is installed");
        var expected = JsonNode.Parse(File.ReadAllText(path))!;
        var raw = File.ReadAllBytes(Path.Combine(TestEnv.TinyLlamaDir, "tokenizer-mixed.txt"));
        Assert.That((string)expected["text_sha256"]!, Is.EqualTo(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(raw))),
            "the expected ids were made from another version of tokenizer-mixed.txt");
        Assume.That(expected[name], Is.Not.Null, $"{path} has no entry for {name}");
        var tok = HfTokenizer.FromDirectory(DirOf(name));
        var text = MixedText;
        Assert.That(tok.Encode(text), Is.EqualTo(expected[name]!["whole"]!.AsArray().Select(v => (int)v!).ToArray()), "whole text");
        var lines = LinesOf(text);
        var want = expected[name]!["lines"]!.AsArray();
        Assert.That(want.Count, Is.EqualTo(lines.Count), "line count");
        for (var i = 0; i < lines.Count; i++)
            Assert.That(tok.Encode(lines[i]), Is.EqualTo(want[i]!.AsArray().Select(v => (int)v!).ToArray()), $"line {i}: {lines[i]}");
        Assert.That(tok.Decode(tok.Encode(text), skipSpecialTokens: false), Is.EqualTo((string)expected[name]!["decoded_whole"]!));
    }

    [Test]
    public void SpecialTokensInTextAreSingleIdsAndDecodeCanSkipThem()
    {
        var tok = HfTokenizer.FromDirectory(Llama3StyleDir);
        var eot = tok.TokenToId("<|eot_id|>")!.Value;
        var ids = tok.Encode("Hello<|eot_id|> world");
        Assert.That(ids, Does.Contain(eot));
        Assert.That(tok.Decode(ids), Is.EqualTo("Hello world"));
        Assert.That(tok.Decode(ids, skipSpecialTokens: false), Is.EqualTo("Hello<|eot_id|> world"));
        Assert.That(tok.Encode("<|eot_id"), Does.Not.Contain(eot), "a partial special token is plain text");
    }

    [Test]
    public void IgnoreMergesTakesWholeWordsFromTheVocabulary()
    {
        // tools/hf/make_test_tokenizer.py put " lazy" in the vocabulary without a merge path to it.
        var tok = HfTokenizer.FromDirectory(Llama3StyleDir);
        var lazy = tok.TokenToId("Ġlazy");
        Assert.That(lazy, Is.Not.Null);
        Assert.That(tok.Encode(" lazy"), Is.EqualTo(new[] { lazy!.Value }));
    }

    [Test]
    public void DecodeNeverThrows()
    {
        var tok = HfTokenizer.FromDirectory(TinyDir);
        Assert.That(tok.Decode([-1, 100000]), Is.EqualTo("\uFFFD\uFFFD"), "unknown ids");
        Assert.That(tok.Decode([]), Is.EqualTo(""));
        var euro = tok.Encode("€");  // three byte tokens
        Assert.That(euro, Has.Length.EqualTo(3));
        Assert.That(tok.Decode(euro.Take(2)), Is.EqualTo("\uFFFD"), "an incomplete UTF-8 sequence");
        Assert.That(tok.Decode([0, .. euro, 1]), Is.EqualTo("€"), "special tokens skipped");
        Assert.That(tok.Decode([0, .. euro, 1], skipSpecialTokens: false), Is.EqualTo("<|begin_of_text|>€<|end_of_text|>"));
    }

    [TestCaseSource(nameof(TokenizerNames))]
    public void StreamingDecoderReleasesOnlyCompleteCharacters(string name)
    {
        var tok = HfTokenizer.FromDirectory(DirOf(name));
        var text = MixedText;
        var ids = tok.Encode(text);
        var stream = new StreamingTextDecoder(tok, skipSpecialTokens: false);
        var sb = new StringBuilder();
        foreach (var id in ids)
        {
            var piece = stream.Push(id);
            Assert.That(piece, Does.Not.Contain("\uFFFD"), "no replacement char for a character split over tokens");
            if (piece.Length > 0) Assert.That(char.IsHighSurrogate(piece[^1]), Is.False, "no half surrogate pair");
            sb.Append(piece);
        }
        sb.Append(stream.Flush());
        Assert.That(sb.ToString(), Is.EqualTo(text));

        var cut = new StreamingTextDecoder(tok);
        var euro = tok.Encode("€");
        Assert.That(cut.Push(euro[0]) + cut.Push(euro[1]), Is.Empty, "held back");
        Assert.That(cut.Flush(), Is.EqualTo("\uFFFD"), "an unfinished character at the end");
    }

    [Test]
    public void LoneSurrogatesEncodeAsReplacementCharacter()
    {
        var tok = HfTokenizer.FromDirectory(TinyDir);
        Assert.That(tok.Encode("a\ud800b"), Is.EqualTo(tok.Encode("a\uFFFDb")));
    }
}
