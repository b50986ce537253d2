using System.Globalization;
using System.Text;

namespace SlothSharp.Tokenization;

/// <summary>One step of a tokenizer.json <c>pre_tokenizer</c>: splits (and possibly rewrites) each piece.</summary>
internal abstract class PreTokenizerStep
{
    public abstract void Split(Piece piece, List<Piece> output);
}

/// <summary><c>Split</c> with a regex or a literal string pattern.</summary>
internal sealed class SplitStep(RegexSplit split) : PreTokenizerStep
{
    public override void Split(Piece piece, List<Piece> output) => split.Split(piece, output);
}

/// <summary><c>ByteLevel</c>: an optional space in front of each piece that lacks one, then (use_regex) GPT-2's split.
/// The byte → character mapping itself is done by the BPE model on a cache miss (it must be the last step).</summary>
internal sealed class ByteLevelStep(bool addPrefixSpace, bool useRegex) : PreTokenizerStep
{
    private static readonly RegexSplit Gpt2 = new(RegexSplit.Gpt2Pattern, SplitBehavior.Isolated, invert: false);

    public override void Split(Piece piece, List<Piece> output)
    {
        if (addPrefixSpace && (piece.Text.Length == 0 || piece.Text.Span[0] != ' '))
            piece = piece with { Text = (" " + piece.Text.ToString()).AsMemory() };
        if (useRegex) Gpt2.Split(piece, output);
        else if (piece.Text.Length > 0) output.Add(piece);
    }
}

/// <summary>When Metaspace puts its replacement character in front of a piece (tokenizers' PrependScheme).</summary>
internal enum PrependScheme { Always, First, Never }

/// <summary><c>Metaspace</c>: spaces become the replacement ('▁'); the replacement is prepended (always, only to the
/// piece at the start of the text, or never) unless the piece already starts with it; with <c>split</c> the piece is
/// cut before each replacement character (MergedWithNext).</summary>
internal sealed class MetaspaceStep(char replacement, PrependScheme scheme, bool split) : PreTokenizerStep
{
    public override void Split(Piece piece, List<Piece> output)
    {
        var text = piece.Text;
        if (text.Span.Contains(' ')) text = text.ToString().Replace(' ', replacement).AsMemory();
        var prepend = scheme == PrependScheme.Always || (scheme == PrependScheme.First && piece.AtStart);
        if (prepend && (text.Length == 0 || text.Span[0] != replacement)) text = (replacement + text.ToString()).AsMemory();
        piece = piece with { Text = text };
        if (!split) { if (text.Length > 0) output.Add(piece); return; }
        var builder = new SplitBuilder(piece, SplitBehavior.MergedWithNext, invert: false, output);
        var span = text.Span;
        for (var i = 0; i < span.Length; i++) if (span[i] == replacement) builder.Match(i, i + 1);
        builder.Finish();
    }
}

/// <summary>Splits on single code points of a class (<c>Digits</c>, <c>Punctuation</c>, <c>WhitespaceSplit</c>,
/// <c>BertPreTokenizer</c>'s parts), with a split behavior.</summary>
internal sealed class CharClassStep(Func<Rune, bool> isMatch, SplitBehavior behavior) : PreTokenizerStep
{
    public override void Split(Piece piece, List<Piece> output)
    {
        var builder = new SplitBuilder(piece, behavior, invert: false, output);
        var span = piece.Text.Span;
        var i = 0;
        while (i < span.Length)
        {
            Rune.DecodeFromUtf16(span[i..], out var rune, out var n);
            if (isMatch(rune)) builder.Match(i, i + n);
            i += n;
        }
        builder.Finish();
    }

    /// <summary>Rust's char::is_numeric: general categories Nd, Nl, No.</summary>
    public static bool IsNumeric(Rune r) => Rune.IsNumber(r);

    /// <summary>tokenizers' is_punctuation: ASCII punctuation (which includes symbols such as $ + &lt; = &gt; ^ ` | ~) or
    /// any Unicode P* category.</summary>
    public static bool IsPunctuation(Rune r)
    {
        if (r.Value < 0x80) return char.IsAsciiLetterOrDigit((char)r.Value) is false && r.Value > 0x20 && r.Value < 0x7F;
        return Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>Rust's char::is_whitespace (Unicode White_Space).</summary>
    public static bool IsWhiteSpace(Rune r) => Rune.IsWhiteSpace(r);
}

/// <summary><c>Whitespace</c>: the runs of word characters and the runs of other non-space characters
/// (<c>\w+|[^\w\s]+</c>); whitespace is dropped.</summary>
internal sealed class WhitespaceStep : PreTokenizerStep
{
    private static readonly RegexSplit Words = new(@"\w+|[^\w\s]+", SplitBehavior.Removed, invert: true);
    public override void Split(Piece piece, List<Piece> output) => Words.Split(piece, output);
}

/// <summary>A <c>Sequence</c> of pre-tokenizers flattened: each step splits every piece the previous one made.</summary>
internal sealed class PreTokenizerPipeline(PreTokenizerStep[] steps)
{
    public int Count => steps.Length;

    /// <summary>The pieces of <paramref name="text"/> (<paramref name="atStart"/>: it begins the encoded text).</summary>
    public void Run(ReadOnlyMemory<char> text, bool atStart, List<Piece> output, List<Piece> scratch)
    {
        output.Clear();
        if (text.Length == 0) return;
        if (steps.Length == 1) { steps[0].Split(new Piece(text, atStart), output); return; }
        output.Add(new Piece(text, atStart));
        foreach (var step in steps)
        {
            scratch.Clear();
            foreach (var p in output) step.Split(p, scratch);
            output.Clear();
            output.AddRange(scratch);
        }
    }
}
