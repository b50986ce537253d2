using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace SlothSharp.Tokenization;

/// <summary>How a Split pre-tokenizer keeps the pattern's matches (tokenizers' SplitDelimiterBehavior).</summary>
internal enum SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>
/// One regex split step of a pre-tokenizer (a tokenizers <c>Split</c>, or the GPT-2 regex inside <c>ByteLevel</c>
/// with <c>use_regex</c>). Hugging Face matches with Oniguruma on Unicode code points; .NET's Regex works on UTF-16
/// code units, so a character outside the BMP (CJK Extension B, math letters, emoji) would be two surrogates of
/// category Cs and never match \p{L} or \p{N}. The text is therefore matched in a stand-in form with one char per
/// code point: each supplementary code point is replaced by a BMP character of the same Unicode general category
/// (the categories are all that \p{..}, \s and [^..] classes test), and the match positions are mapped back.
/// </summary>
internal sealed class RegexSplit
{
    /// <summary>GPT-2's pattern, used by ByteLevel with use_regex = true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly Regex _regex;
    private readonly SplitBehavior _behavior;
    private readonly bool _invert;

    public RegexSplit(string pattern, SplitBehavior behavior, bool invert, bool literal = false)
    {
        _regex = new Regex(literal ? Regex.Escape(pattern) : pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);
        _behavior = behavior;
        _invert = invert;
    }

    public void Split(string text, List<string> output)
    {
        if (text.Length == 0) return;
        var (standIn, starts) = StandIn(text);
        // Pieces as (start, end, isMatch) in code points of the stand-in, covering the text in order.
        var pieces = new List<(int Start, int End, bool Match)>();
        var last = 0;
        foreach (Match m in _regex.Matches(standIn))
        {
            if (m.Length == 0) continue;
            if (m.Index > last) pieces.Add((last, m.Index, false));
            pieces.Add((m.Index, m.Index + m.Length, true));
            last = m.Index + m.Length;
        }
        if (last < standIn.Length) pieces.Add((last, standIn.Length, false));
        if (_invert) pieces = pieces.Select(p => (p.Start, p.End, !p.Match)).ToList();

        string Sub(int s, int e) => text[starts[s]..starts[e]];
        switch (_behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var p in pieces) output.Add(Sub(p.Start, p.End));
                break;
            case SplitBehavior.Removed:
                foreach (var p in pieces) if (!p.Match) output.Add(Sub(p.Start, p.End));
                break;
            case SplitBehavior.MergedWithPrevious:
            {
                // A match is glued to the end of the piece before it.
                int? open = null;
                foreach (var p in pieces)
                {
                    if (p.Match && open is { } o) { output[^1] = Sub(o, p.End); open = null; continue; }
                    output.Add(Sub(p.Start, p.End));
                    open = p.Match ? null : p.Start;
                }
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                // A match is glued to the start of the piece after it.
                int? pending = null;
                foreach (var p in pieces)
                {
                    if (p.Match) { if (pending is { } q) output.Add(Sub(q, p.Start)); pending = p.Start; continue; }
                    output.Add(Sub(pending ?? p.Start, p.End));
                    pending = null;
                }
                if (pending is { } rest) output.Add(Sub(rest, standIn.Length));
                break;
            }
            case SplitBehavior.Contiguous:
            {
                // Adjacent matches become one piece.
                var i = 0;
                while (i < pieces.Count)
                {
                    var j = i;
                    if (pieces[i].Match) while (j + 1 < pieces.Count && pieces[j + 1].Match) j++;
                    output.Add(Sub(pieces[i].Start, pieces[j].End));
                    i = j + 1;
                }
                break;
            }
        }
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
    private static (string StandIn, int[] Starts) StandIn(string text)
    {
        var hasSurrogates = false;
        foreach (var c in text) if (char.IsSurrogate(c)) { hasSurrogates = true; break; }
        if (!hasSurrogates) return (text, Enumerable.Range(0, text.Length + 1).ToArray());
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
