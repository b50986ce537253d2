using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace SlothSharp.Tests;

/// <summary>
/// An independent, deliberately plain reimplementation of Hugging Face byte-level BPE for the tokenizer tests: its own
/// JSON reading, a hand-written scanner for the GPT-2 and Llama 3 split patterns over Unicode code points (no .NET
/// Regex, so the library's regex handling is checked too), GPT-2's byte map built as in the original encoder.py, and
/// the textbook merge loop (find the lowest-ranked adjacent pair, merge all its occurrences, repeat).
/// </summary>
internal sealed class TokenizerReference
{
    public const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private readonly Dictionary<string, int> _vocab = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string), int> _ranks = new();
    private readonly List<(string Content, int Id)> _added = new();
    private readonly bool _ignoreMerges;
    private readonly bool _llama3;
    private readonly Dictionary<byte, char> _byteMap = new();

    public TokenizerReference(string tokenizerJson)
    {
        var root = JsonNode.Parse(File.ReadAllText(tokenizerJson))!;
        var model = root["model"]!;
        foreach (var (k, v) in model["vocab"]!.AsObject()) _vocab[k] = (int)v!;
        var rank = 0;
        foreach (var m in model["merges"]!.AsArray())
        {
            var pair = m is JsonArray a ? ((string)a[0]!, (string)a[1]!) : Split2((string)m!);
            _ranks.TryAdd(pair, rank++);
        }
        _ignoreMerges = (bool?)model["ignore_merges"] ?? false;
        foreach (var t in root["added_tokens"]!.AsArray()) _added.Add(((string)t!["content"]!, (int)t["id"]!));
        var pre = root["pre_tokenizer"]!;
        if ((string)pre["type"]! == "Sequence")
        {
            var pattern = (string)pre["pretokenizers"]![0]!["pattern"]!["Regex"]!;
            if (pattern != Llama3Pattern) throw new NotSupportedException("reference: unknown split pattern");
            _llama3 = true;
        }
        else if ((string)pre["type"]! != "ByteLevel" || !((bool?)pre["use_regex"] ?? true)) throw new NotSupportedException("reference: pre_tokenizer");

        // bytes_to_unicode() from GPT-2's encoder.py.
        var bs = new List<int>();
        for (var b = '!'; b <= '~'; b++) bs.Add(b);
        for (var b = 0xA1; b <= 0xAC; b++) bs.Add(b);
        for (var b = 0xAE; b <= 0xFF; b++) bs.Add(b);
        var cs = new List<int>(bs);
        var n = 0;
        for (var b = 0; b < 256; b++)
            if (!bs.Contains(b)) { bs.Add(b); cs.Add(256 + n); n++; }
        for (var i = 0; i < 256; i++) _byteMap[(byte)bs[i]] = (char)cs[i];
    }

    private static (string, string) Split2(string s)
    {
        var parts = s.Split(' ');
        return (parts[0], parts[1]);
    }

    public List<int> Encode(string text)
    {
        var ids = new List<int>();
        var rest = text;
        while (rest.Length > 0)
        {
            // Earliest occurrence of any added token, the longest one at that position.
            var best = -1;
            (string Content, int Id) found = ("", -1);
            foreach (var t in _added)
            {
                var at = rest.IndexOf(t.Content, StringComparison.Ordinal);
                if (at >= 0 && (best < 0 || at < best || (at == best && t.Content.Length > found.Content.Length))) { best = at; found = t; }
            }
            var plain = best < 0 ? rest : rest[..best];
            foreach (var word in PreTokenize(plain)) ids.AddRange(Bpe(word));
            if (best < 0) break;
            ids.Add(found.Id);
            rest = rest[(best + found.Content.Length)..];
        }
        return ids;
    }

    private IEnumerable<int> Bpe(string piece)
    {
        var word = new StringBuilder();
        foreach (var b in Encoding.UTF8.GetBytes(piece)) word.Append(_byteMap[b]);
        var w = word.ToString();
        if (_ignoreMerges && _vocab.TryGetValue(w, out var whole)) return [whole];
        var parts = w.Select(c => c.ToString()).ToList();
        while (true)
        {
            var bestRank = int.MaxValue;
            (string, string) bestPair = default;
            for (var i = 0; i + 1 < parts.Count; i++)
                if (_ranks.TryGetValue((parts[i], parts[i + 1]), out var r) && r < bestRank) { bestRank = r; bestPair = (parts[i], parts[i + 1]); }
            if (bestRank == int.MaxValue) break;
            var merged = new List<string>();
            for (var i = 0; i < parts.Count; i++)
            {
                if (i + 1 < parts.Count && parts[i] == bestPair.Item1 && parts[i + 1] == bestPair.Item2) { merged.Add(parts[i] + parts[i + 1]); i++; }
                else merged.Add(parts[i]);
            }
            parts = merged;
        }
        return parts.Select(p => _vocab[p]);
    }

    // ---- the split patterns, scanned by hand over code points ----

    private static bool IsL(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
        or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter;
    private static bool IsN(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
    private static bool IsS(int cp) => cp is '\t' or '\n' or '\v' or '\f' or '\r' or 0x85 || CharUnicodeInfo.GetUnicodeCategory(cp)
        is UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator;
    private static bool IsCrLf(int cp) => cp is '\r' or '\n';
    private static bool IsOther(int cp) => !IsS(cp) && !IsL(cp) && !IsN(cp);

    public IEnumerable<string> PreTokenize(string text)
    {
        var cps = new List<int>();
        for (var i = 0; i < text.Length; i += char.IsSurrogatePair(text, i) ? 2 : 1) cps.Add(char.ConvertToUtf32(text, i));
        var pos = 0;
        var pieces = new List<string>();
        while (pos < cps.Count)
        {
            var end = _llama3 ? MatchLlama3(cps, pos) : MatchGpt2(cps, pos);
            if (end <= pos) throw new InvalidOperationException($"reference scanner: no match at code point {pos}");
            var sb = new StringBuilder();
            for (var k = pos; k < end; k++) sb.Append(char.ConvertFromUtf32(cps[k]));
            pieces.Add(sb.ToString());
            pos = end;
        }
        return pieces;
    }

    private static int Run(List<int> c, int i, Func<int, bool> p) { while (i < c.Count && p(c[i])) i++; return i; }

    private static int Contraction(List<int> c, int i, bool ignoreCase)
    {
        if (c[i] != '\'') return -1;
        foreach (var suffix in new[] { "s", "t", "re", "ve", "m", "ll", "d" })
        {
            var ok = i + suffix.Length < c.Count;
            for (var k = 0; ok && k < suffix.Length; k++)
            {
                var ch = c[i + 1 + k];
                ok = ch == suffix[k] || (ignoreCase && (ch == char.ToUpperInvariant(suffix[k]) || (suffix[k] == 's' && ch == 0x17F)));
            }
            if (ok) return i + 1 + suffix.Length;
        }
        return -1;
    }

    private static int MatchLlama3(List<int> c, int i)
    {
        var e = Contraction(c, i, ignoreCase: true);
        if (e > 0) return e;
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (!IsCrLf(c[i]) && !IsL(c[i]) && !IsN(c[i]) && i + 1 < c.Count && IsL(c[i + 1])) return Run(c, i + 1, IsL);
        if (IsL(c[i])) return Run(c, i, IsL);
        // \p{N}{1,3}
        if (IsN(c[i])) { var j = i; while (j < c.Count && j < i + 3 && IsN(c[j])) j++; return j; }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        var s = c[i] == ' ' && i + 1 < c.Count && IsOther(c[i + 1]) ? i + 1 : i;
        if (IsOther(c[s])) return Run(c, Run(c, s, IsOther), IsCrLf);
        // \s*[\r\n]+ : the whitespace run up to its last CR/LF
        var ws = Run(c, i, IsS);
        for (var k = ws - 1; k >= i; k--) if (IsCrLf(c[k])) return k + 1;
        return WhitespaceTail(c, i, ws);
    }

    private static int MatchGpt2(List<int> c, int i)
    {
        var e = Contraction(c, i, ignoreCase: false);
        if (e > 0) return e;
        var s = c[i] == ' ' && i + 1 < c.Count ? i + 1 : i;
        if (IsL(c[s])) return Run(c, s, IsL);
        if (IsN(c[s])) return Run(c, s, IsN);
        if (IsOther(c[s])) return Run(c, s, IsOther);
        return WhitespaceTail(c, i, Run(c, i, IsS));
    }

    /// <summary>\s+(?!\S)|\s+ for the whitespace run [i, ws): all of it at the end of text or when it is one char,
    /// else all but its last char (which then leads the next piece).</summary>
    private static int WhitespaceTail(List<int> c, int i, int ws)
    {
        if (ws == c.Count || ws - i == 1) return ws;
        return ws - 1;
    }
}
