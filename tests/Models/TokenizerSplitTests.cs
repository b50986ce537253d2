using NUnit.Framework;
using SlothSharp.Tokenization;

namespace SlothSharp.Tests;

/// <summary>The split behaviors, on the example tokenizers documents for its Split pre-tokenizer
/// ("the-final--countdown" split on "-").</summary>
public class TokenizerSplitTests
{
    [TestCase("Removed", new[] { "the", "final", "countdown" })]
    [TestCase("Isolated", new[] { "the", "-", "final", "-", "-", "countdown" })]
    [TestCase("MergedWithPrevious", new[] { "the-", "final-", "-", "countdown" })]
    [TestCase("MergedWithNext", new[] { "the", "-final", "-", "-countdown" })]
    [TestCase("Contiguous", new[] { "the", "-", "final", "--", "countdown" })]
    public void BehaviorsMatchTokenizers(string behavior, string[] expected)
    {
        var output = new List<string>();
        new RegexSplit("-", Enum.Parse<SplitBehavior>(behavior), invert: false, literal: true).Split("the-final--countdown", output);
        Assert.That(output, Is.EqualTo(expected));
    }

    [Test]
    public void MetaspaceSplitsBeforeEachReplacementAndPrepends()
    {
        var output = new List<Piece>();
        new MetaspaceStep('▁', PrependScheme.Always, split: true).Split(new Piece("Hey friend!".AsMemory(), true), output);
        Assert.That(output.Select(p => p.Text.ToString()), Is.EqualTo(new[] { "▁Hey", "▁friend!" }));
        output.Clear();
        new MetaspaceStep('▁', PrependScheme.First, split: true).Split(new Piece("Hey  friend".AsMemory(), false), output);
        Assert.That(output.Select(p => p.Text.ToString()), Is.EqualTo(new[] { "Hey", "▁", "▁friend" }), "first: only at the start of the text");
    }

    private static string[] Pieces(PreTokenizerStep step, string text)
    {
        var output = new List<Piece>();
        step.Split(new Piece(text.AsMemory(), true), output);
        return output.Select(p => p.Text.ToString()).ToArray();
    }

    /// <summary>The examples of tokenizers' own tests for these pre-tokenizers.</summary>
    [Test]
    public void CharacterClassPreTokenizersMatchTokenizersExamples()
    {
        Assert.That(Pieces(new CharClassStep(CharClassStep.IsNumeric, SplitBehavior.Isolated), "Hey 123 friend!"),
            Is.EqualTo(new[] { "Hey ", "1", "2", "3", " friend!" }), "Digits(individual_digits=true)");
        Assert.That(Pieces(new CharClassStep(CharClassStep.IsNumeric, SplitBehavior.Contiguous), "Hey 123 friend!"),
            Is.EqualTo(new[] { "Hey ", "123", " friend!" }), "Digits(individual_digits=false)");
        Assert.That(Pieces(new CharClassStep(CharClassStep.IsPunctuation, SplitBehavior.Isolated), "Hey friend!     How are you?!?"),
            Is.EqualTo(new[] { "Hey friend", "!", "     How are you", "?", "!", "?" }), "Punctuation");
        Assert.That(Pieces(new CharClassStep(CharClassStep.IsWhiteSpace, SplitBehavior.Removed), "Hey man!"),
            Is.EqualTo(new[] { "Hey", "man!" }), "WhitespaceSplit");
        Assert.That(Pieces(new WhitespaceStep(), "How are you doing?"), Is.EqualTo(new[] { "How", "are", "you", "doing", "?" }), "Whitespace");
    }

    [Test]
    public void DecodersMatchTokenizersExamples()
    {
        List<string> Chain(TokenDecoder d, params string[] tokens)
        {
            var list = tokens.ToList();
            d.DecodeChain(list);
            return list;
        }
        Assert.That(Chain(new MetaspaceDecoder('▁', PrependScheme.Always), "▁Hey", "▁friend!"), Is.EqualTo(new[] { "Hey", " friend!" }));
        Assert.That(Chain(new MetaspaceDecoder('▁', PrependScheme.Never), "▁Hey", "▁friend!"), Is.EqualTo(new[] { " Hey", " friend!" }));
        Assert.That(Chain(new ByteFallbackDecoder(), "Hey", "friend!"), Is.EqualTo(new[] { "Hey", "friend!" }));
        Assert.That(Chain(new ByteFallbackDecoder(), "<0x61>"), Is.EqualTo(new[] { "a" }));
        Assert.That(Chain(new ByteFallbackDecoder(), "<0xE5>"), Is.EqualTo(new[] { "\uFFFD" }));
        Assert.That(Chain(new ByteFallbackDecoder(), "<0xE5>", "<0x8f>"), Is.EqualTo(new[] { "\uFFFD", "\uFFFD" }));
        Assert.That(Chain(new ByteFallbackDecoder(), "<0xE5>", "<0x8f>", "<0xab>"), Is.EqualTo(new[] { "叫" }));
        Assert.That(Chain(new ByteFallbackDecoder(), "<0xE5>", "<0x8f>", "<0xab>", "a"), Is.EqualTo(new[] { "叫", "a" }));
        Assert.That(Chain(new StripDecoder('H', 1, 0), "Hey", " friend!", "HHH"), Is.EqualTo(new[] { "ey", " friend!", "HH" }));
        Assert.That(Chain(new StripDecoder('y', 0, 1), "Hey", " friend!"), Is.EqualTo(new[] { "He", " friend!" }));
        Assert.That(Chain(new FuseDecoder(), "Hey", " friend!"), Is.EqualTo(new[] { "Hey friend!" }));
    }

    [Test]
    public void NormalizersMatchUnicodeAndTokenizers()
    {
        Assert.That(new UnicodeNormalizer(System.Text.NormalizationForm.FormC).Normalize("e\u0301\uFFFEe\u0301"), Is.EqualTo("é\uFFFEé"),
            "NFC around U+FFFE, which string.Normalize refuses");
        Assert.That(new UnicodeNormalizer(System.Text.NormalizationForm.FormKC).Normalize("ﬁ①"), Is.EqualTo("fi1"));
        Assert.That(new UnicodeNormalizer(System.Text.NormalizationForm.FormD).Normalize("é"), Is.EqualTo("e\u0301"));
        Assert.That(new StripNormalizer(true, false).Normalize("  a b  "), Is.EqualTo("a b  "));
        Assert.That(new PrependNormalizer("▁").Normalize(""), Is.EqualTo(""), "Prepend leaves empty text alone");
        Assert.That(new ReplaceNormalizer(null, new System.Text.RegularExpressions.Regex(" +"), "$1").Normalize("a  b"), Is.EqualTo("a$1b"),
            "content is literal");
    }
}
