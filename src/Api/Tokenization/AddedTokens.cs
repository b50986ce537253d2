namespace SlothSharp.Tokenization;

/// <summary>One entry of tokenizer.json's <c>added_tokens</c>.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized);

/// <summary>
/// Finds added tokens (special tokens such as <c>&lt;|eot_id|&gt;</c>) in raw text before any pre-tokenization, as
/// tokenizers' AddedVocabulary does: leftmost match first, the longest token at that position; <c>lstrip</c> /
/// <c>rstrip</c> swallow the whitespace on that side; <c>single_word</c> tokens only match between non-word chars.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    /// <summary>Splits <paramref name="text"/> into plain segments (Token null) and added-token matches.</summary>
    public List<(string Text, AddedToken? Token)> Split(string text)
    {
        var result = new List<(string, AddedToken?)>();
        if (_byFirstChar.Count == 0) { if (text.Length > 0) result.Add((text, null)); return result; }
        var segmentStart = 0;
        var i = 0;
        while (i < text.Length)
        {
            var token = MatchAt(text, i);
            if (token is null) { i++; continue; }
            var start = i;
            var end = i + token.Content.Length;
            if (token.LStrip) while (start > segmentStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (token.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > segmentStart) result.Add((text[segmentStart..start], null));
            result.Add((text[start..end], token));
            segmentStart = i = end;
        }
        if (segmentStart < text.Length) result.Add((text[segmentStart..], null));
        return result;
    }

    private AddedToken? MatchAt(string text, int i)
    {
        if (!_byFirstChar.TryGetValue(text[i], out var candidates)) return null;
        foreach (var t in candidates)
        {
            if (!text.AsSpan(i).StartsWith(t.Content, StringComparison.Ordinal)) continue;
            if (t.SingleWord)
            {
                var end = i + t.Content.Length;
                if ((i > 0 && IsWordChar(text[i - 1])) || (end < text.Length && IsWordChar(text[end]))) continue;
            }
            return t;
        }
        return null;
    }

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
}
