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
}
