namespace SlothSharp.Tokenization;

/// <summary>One entry of tokenizer.json's <c>added_tokens</c>.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized);

/// <summary>
/// Finds added tokens (special tokens such as <c>&lt;|eot_id|&gt;</c>, Gemma's newline runs) in text, as tokenizers'
/// AddedVocabulary does: leftmost match first, the longest token at that position; <c>lstrip</c> / <c>rstrip</c>
/// swallow the whitespace on that side; <c>single_word</c> tokens only match between non-word characters.
/// tokenizers runs two of these: tokens with <c>normalized: false</c> on the raw text, then tokens with
/// <c>normalized: true</c> on each normalized piece in between. A character trie keeps the scan linear.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public AddedToken? Token;
    }

    private readonly Node _root = new();
    // One bit per UTF-16 code unit that starts some token: most characters of a text are rejected with one test.
    private readonly ulong[] _firstChars = new ulong[65536 / 64];

    public bool IsEmpty => _root.Children is null;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        foreach (var t in tokens)
        {
            if (t.Content.Length == 0) continue;
            var node = _root;
            _firstChars[t.Content[0] >> 6] |= 1UL << (t.Content[0] & 63);
            foreach (var c in t.Content)
            {
                node.Children ??= new Dictionary<char, Node>();
                if (!node.Children.TryGetValue(c, out var child)) node.Children[c] = child = new Node();
                node = child;
            }
            // Two entries with the same content: the first one wins, as a lookup by content would give.
            node.Token ??= t;
        }
    }

    /// <summary>Splits <paramref name="text"/> into plain ranges (Token null) and added-token matches, in order,
    /// covering the text except the whitespace that lstrip/rstrip swallow.</summary>
    public void Split(string text, List<(int Start, int End, AddedToken? Token)> result)
    {
        result.Clear();
        if (IsEmpty) { if (text.Length > 0) result.Add((0, text.Length, null)); return; }
        var segmentStart = 0;
        var i = 0;
        while (i < text.Length)
        {
            var c = text[i];
            if ((_firstChars[c >> 6] & (1UL << (c & 63))) == 0) { i++; continue; }
            var token = MatchAt(text, i);
            if (token is null) { i++; continue; }
            var start = i;
            var end = i + token.Content.Length;
            if (token.LStrip) while (start > segmentStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (token.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > segmentStart) result.Add((segmentStart, start, null));
            result.Add((start, end, token));
            segmentStart = i = end;
        }
        if (segmentStart < text.Length) result.Add((segmentStart, text.Length, null));
    }

    /// <summary>The longest token that matches at <paramref name="i"/> (and passes its single_word check), or null.</summary>
    private AddedToken? MatchAt(string text, int i)
    {
        AddedToken? best = null;
        var node = _root;
        for (var j = i; j < text.Length; j++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[j], out node)) break;
            if (node.Token is { } t && (!t.SingleWord || IsWordBoundary(text, i, j + 1))) best = t;
        }
        return best;
    }

    private static bool IsWordBoundary(string text, int start, int end) =>
        (start == 0 || !IsWordChar(text[start - 1])) && (end == text.Length || !IsWordChar(text[end]));

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
}
