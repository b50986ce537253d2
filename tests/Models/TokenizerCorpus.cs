using System.Text;
using System.Text.Json;

namespace SlothSharp.Tests;

/// <summary>tests/data/tokenizers/corpus.jsonl: one {"text": …} per line. System.Text.Json refuses to turn an escaped
/// lone surrogate ("\ud800") into a string, and the corpus has such documents on purpose, so the string is unescaped
/// here from the raw JSON token.</summary>
internal static class TokenizerCorpus
{
    public static string Dir => Path.Combine(TestEnv.DataDir, "tokenizers");

    /// <summary>The documents, with their 1-based line numbers.</summary>
    public static List<(int Line, string Text)> Read()
    {
        var result = new List<(int, string)>();
        var lines = File.ReadAllLines(Path.Combine(Dir, "corpus.jsonl"), new UTF8Encoding(false, true));
        for (var i = 0; i < lines.Length; i++)
            if (lines[i].Length > 0) result.Add((i + 1, TextOf(lines[i])));
        return result;
    }

    private static string TextOf(string line)
    {
        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(line));
        while (reader.Read())
            if (reader.TokenType == JsonTokenType.PropertyName && reader.ValueTextEquals("text"))
            {
                reader.Read();
                return Unescape(Encoding.UTF8.GetString(reader.HasValueSequence ? System.Buffers.BuffersExtensions.ToArray(reader.ValueSequence) : reader.ValueSpan.ToArray()));
            }
        throw new InvalidDataException($"corpus line without \"text\": {line}");
    }

    private static string Unescape(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\') { sb.Append(s[i]); continue; }
            var c = s[++i];
            switch (c)
            {
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'u': sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 4), 16)); i += 4; break;
                default: sb.Append(c); break;  // \" \\ \/
            }
        }
        return sb.ToString();
    }
}
