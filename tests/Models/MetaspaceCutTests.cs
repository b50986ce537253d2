using NUnit.Framework;
using SlothSharp.Tokenization;

namespace SlothSharp.Tests;

/// <summary>
/// SentencePiece-style BPE (no pre-tokenizer: a whole text is one word) is encoded piece by piece, cut before each
/// '▁' that no vocabulary token joins to the character before it. These cases are worked by hand from the merge
/// ranks, as tokenizers applies them to the whole text: a cut where a token spans the '▁' would change the ids.
/// </summary>
public class MetaspaceCutTests
{
    // Vocabulary: ▁ a b c, "a▁" and "a▁b" (tokens that join a character to a following '▁', as Gemma 3's ">▁</"
    // does), "▁b". Merges by rank: a+▁, a▁+b, ▁+b.
    private const string Json = """
        {"version": "1.0", "added_tokens": [], "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
         "pre_tokenizer": null, "post_processor": null, "decoder": null,
         "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                   "fuse_unk": false, "byte_fallback": false,
                   "vocab": {"▁": 0, "a": 1, "b": 2, "a▁": 3, "a▁b": 4, "▁b": 5, "c": 6},
                   "merges": ["a ▁", "a▁ b", "▁ b"]}}
        """;

    [TestCase("ca b", new[] { 6, 4 })]            // whole text: c a ▁ b → c a▁ b → c a▁b; a cut before ▁ would give c a ▁b
    [TestCase("cb b", new[] { 6, 2, 5 })]         // 'b' never joins '▁': the cut is taken, same ids as the whole text
    [TestCase("ca bca b b", new[] { 6, 4, 6, 4, 5 })]
    [TestCase("  b", new[] { 0, 5 })]             // a '▁' run is never cut inside
    [TestCase("x b", new[] { 5 })]                // 'x' is not a token (dropped: no unk): no cut after it
    public void CutsOnlyWhereNoTokenSpansTheMetaspace(string text, int[] expected)
    {
        var tok = HfTokenizer.FromJson(Json);
        Assert.That(tok.Encode(text), Is.EqualTo(expected));
    }
}
