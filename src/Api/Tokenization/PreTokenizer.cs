using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace SlothSharp.Tokenization;

/// <summary>How a split keeps the pieces that match (tokenizers' SplitDelimiterBehavior).</summary>
internal enum SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>A piece of text on its way through the pre-tokenizer: a slice of a string (no copy), and whether it
/// starts at offset 0 of the text being encoded (Metaspace's prepend_scheme "first" needs it).</summary>
internal readonly record struct Piece(ReadOnlyMemory<char> Text, bool AtStart);

/// <summary>
/// Splits a piece, given its matches (in order, non-overlapping, each as start/end), the way tokenizers'
/// NormalizedString::split does: the matches and the gaps between them cover the text; <c>invert</c> swaps which
/// is which; the behavior decides what is kept and what is glued together; empty pieces are dropped.
/// Isolated and Removed stream their output; the merging behaviors collect the parts first (they look ahead).
/// </summary>
internal struct SplitBuilder
{
    private readonly Piece _piece;
    private readonly SplitBehavior _behavior;
    private readonly bool _invert;
    private readonly List<Piece> _output;
    private List<(int Start, int End, bool Match)>? _parts;
    private int _covered;

    public SplitBuilder(Piece piece, SplitBehavior behavior, bool invert, List<Piece> output)
    {
        _piece = piece;
        _behavior = behavior;
        _invert = invert;
        _output = output;
        _parts = null;
        _covered = 0;
    }

    /// <summary>Reports the next match [start, end) (relative to the piece).</summary>
    public void Match(int start, int end)
    {
        if (end <= start) return;  // an empty match only makes empty pieces, which are dropped
        if (start > _covered) Part(_covered, start, false);
        Part(start, end, true);
        _covered = end;
    }

    /// <summary>Classifies the rest of the text and emits the remaining pieces.</summary>
    public void Finish()
    {
        var length = _piece.Text.Length;
        if (_covered < length) Part(_covered, length, false);
        if (_parts is not { Count: > 0 } parts) return;
        var merged = new List<(int Start, int End)>(parts.Count);
        var previousMatch = false;
        switch (_behavior)
        {
            case SplitBehavior.MergedWithPrevious:
                // A match right after a non-match is glued to its end.
                foreach (var (s, e, m) in parts)
                {
                    if (m && !previousMatch && merged.Count > 0) merged[^1] = (merged[^1].Start, e);
                    else merged.Add((s, e));
                    previousMatch = m;
                }
                break;
            case SplitBehavior.MergedWithNext:
                // Walking backwards: a match right before a non-match is glued to its start.
                for (var i = parts.Count - 1; i >= 0; i--)
                {
                    var (s, e, m) = parts[i];
                    if (m && !previousMatch && merged.Count > 0) merged[^1] = (s, merged[^1].End);
                    else merged.Add((s, e));
                    previousMatch = m;
                }
                merged.Reverse();
                break;
            default:  // Contiguous: runs of matches become one piece
                foreach (var (s, e, m) in parts)
                {
                    if (m == previousMatch && merged.Count > 0) merged[^1] = (merged[^1].Start, e);
                    else merged.Add((s, e));
                    previousMatch = m;
                }
                break;
        }
        foreach (var (s, e) in merged) Emit(s, e);
    }

    private void Part(int start, int end, bool isMatch)
    {
        if (_invert) isMatch = !isMatch;
        switch (_behavior)
        {
            case SplitBehavior.Isolated:
                Emit(start, end);
                break;
            case SplitBehavior.Removed:
                if (!isMatch) Emit(start, end);
                break;
            default:
                (_parts ??= new List<(int, int, bool)>()).Add((start, end, isMatch));
                break;
        }
    }

    private readonly void Emit(int start, int end)
    {
        if (end <= start) return;
        _output.Add(new Piece(_piece.Text[start..end], _piece.AtStart && start == 0));
    }
}

/// <summary>
/// A regex split (a tokenizers <c>Split</c>, or the GPT-2 regex inside <c>ByteLevel</c> with <c>use_regex</c>).
/// Hugging Face matches with Oniguruma on Unicode code points; .NET's Regex works on UTF-16 code units, so a
/// character outside the BMP (CJK Extension B, math letters, emoji) would be two surrogates of category Cs and never
/// match \p{L} or \p{N}. Such text is therefore matched in a stand-in form with one char per code point: each
/// supplementary code point is replaced by a BMP character of the same Unicode general category (the categories are
/// all that \p{..}, \s and [^..] classes test), and the match positions are mapped back. The regex is compiled once.
/// </summary>
internal sealed class RegexSplit
{
    /// <summary>GPT-2's pattern, used by ByteLevel with use_regex = true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    // One Regex per thread: a Regex keeps a single cached matcher, and threads that find it taken build a new one on
    // every call (allocations that stopped EncodeBatch from scaling past a few cores).
    private readonly ThreadLocal<Regex> _regex;
    private readonly SplitBehavior _behavior;
    private readonly bool _invert;

    public RegexSplit(string pattern, SplitBehavior behavior, bool invert, bool literal = false)
    {
        var source = literal ? Regex.Escape(pattern) : pattern;
        var first = new Regex(source, RegexOptions.CultureInvariant | RegexOptions.Compiled);  // reports a bad pattern now
        var handedOut = 0;
        _regex = new ThreadLocal<Regex>(() => Interlocked.Exchange(ref handedOut, 1) == 0
            ? first : new Regex(source, RegexOptions.CultureInvariant | RegexOptions.Compiled));
        _behavior = behavior;
        _invert = invert;
    }

    public void Split(Piece piece, List<Piece> output)
    {
        if (piece.Text.Length == 0) return;
        var builder = new SplitBuilder(piece, _behavior, _invert, output);
        var span = piece.Text.Span;
        if (!HasSurrogates(span))
        {
            foreach (var m in _regex.Value!.EnumerateMatches(span)) builder.Match(m.Index, m.Index + m.Length);
        }
        else
        {
            var (standIn, starts) = StandIn(span);
            foreach (var m in _regex.Value!.EnumerateMatches(standIn)) builder.Match(starts[m.Index], starts[m.Index + m.Length]);
        }
        builder.Finish();
    }

    /// <summary>Compatibility helper for tests: the pieces of a whole string.</summary>
    public void Split(string text, List<string> output)
    {
        var pieces = new List<Piece>();
        Split(new Piece(text.AsMemory(), true), pieces);
        foreach (var p in pieces) output.Add(p.Text.ToString());
    }

    private static bool HasSurrogates(ReadOnlySpan<char> s)
    {
        foreach (var c in s) if (char.IsSurrogate(c)) return true;
        return false;
    }

    private static readonly char[] CategoryStandIns = BuildStandIns();

    private static char[] BuildStandIns()
    {
        // For each general category, a BMP character outside ASCII (so case-insensitive groups such as (?i:'s)
        // cannot match it) that is not whitespace.
        var table = new char[32];
        for (var c = 0xFFFD; c >= 0x80; c--)
        {
            var ch = (char)c;
            if (char.IsSurrogate(ch) || char.IsWhiteSpace(ch) || ch == '\u017F' || ch == '\u212A' || ch == '\u0130' || ch == '\u0131') continue;
            table[(int)CharUnicodeInfo.GetUnicodeCategory(ch)] = ch;
        }
        return table;
    }

    /// <summary>The text with one char per code point, and each code point's start offset in the original (plus the
    /// end). A lone surrogate stays as it is.</summary>
    private static (string StandIn, int[] Starts) StandIn(ReadOnlySpan<char> text)
    {
        var sb = new StringBuilder(text.Length);
        var starts = new List<int>(text.Length + 1);
        for (var i = 0; i < text.Length; i++)
        {
            starts.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                var cp = char.ConvertToUtf32(text[i], text[i + 1]);
                var standIn = CategoryStandIns[(int)CharUnicodeInfo.GetUnicodeCategory(cp)];
                sb.Append(standIn == '\0' ? '\uE000' : standIn);
                i++;
            }
            else sb.Append(text[i]);
        }
        starts.Add(text.Length);
        return (sb.ToString(), starts.ToArray());
    }
}
