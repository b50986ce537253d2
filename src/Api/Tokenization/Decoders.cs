using System.Text;
using System.Text.RegularExpressions;

namespace SlothSharp.Tokenization;

/// <summary>
/// A tokenizer.json <c>decoder</c>. <see cref="DecodeChain"/> is tokenizers' decode_chain: it turns the list of token
/// strings into another list (the final text is their concatenation). <see cref="TokenBytes"/> is the same step for
/// one token on its own, as UTF-8 bytes that may hold partial characters: what streaming decoding needs (the only
/// context it has is whether the token is the first of the text).
/// </summary>
internal abstract class TokenDecoder
{
    public abstract void DecodeChain(List<string> tokens);
    public abstract byte[] TokenBytes(byte[] token, bool first);

    protected static byte[] ReplaceBytes(byte[] input, byte[] pattern, byte[] content)
    {
        if (pattern.Length == 0 || input.AsSpan().IndexOf(pattern) < 0) return input;
        var output = new List<byte>(input.Length);
        var i = 0;
        while (i < input.Length)
        {
            if (input.AsSpan(i).StartsWith(pattern)) { output.AddRange(content); i += pattern.Length; }
            else output.Add(input[i++]);
        }
        return output.ToArray();
    }
}

/// <summary><c>ByteLevel</c>: every token's characters back to bytes (a token with a character outside GPT-2's map
/// contributes its own UTF-8), all joined and read as UTF-8 with U+FFFD for invalid sequences: one string.</summary>
internal sealed class ByteLevelDecoder : TokenDecoder
{
    public override void DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens) ByteLevel.AppendBytes(t, bytes);
        tokens.Clear();
        tokens.Add(Encoding.UTF8.GetString(bytes.ToArray()));
    }

    public override byte[] TokenBytes(byte[] token, bool first)
    {
        var bytes = new List<byte>(token.Length);
        ByteLevel.AppendBytes(Encoding.UTF8.GetString(token), bytes);
        return bytes.ToArray();
    }
}

/// <summary><c>Replace</c>: in each token, a literal string or regex matches become <c>content</c>.</summary>
internal sealed class ReplaceDecoder(string? literal, Regex? regex, string content) : TokenDecoder
{
    private readonly ReplaceNormalizer _replace = new(literal, regex, content);

    public override void DecodeChain(List<string> tokens)
    {
        for (var i = 0; i < tokens.Count; i++) tokens[i] = _replace.Normalize(tokens[i]);
    }

    public override byte[] TokenBytes(byte[] token, bool first) => literal is not null
        ? ReplaceBytes(token, Encoding.UTF8.GetBytes(literal), Encoding.UTF8.GetBytes(content))
        : Encoding.UTF8.GetBytes(_replace.Normalize(Encoding.UTF8.GetString(token)));
}

/// <summary><c>ByteFallback</c>: runs of <c>&lt;0xNN&gt;</c> tokens become the text of their bytes; a run that is
/// not valid UTF-8 becomes one U+FFFD per byte (as tokenizers does).</summary>
internal sealed class ByteFallbackDecoder : TokenDecoder
{
    public static bool TryParseByte(ReadOnlySpan<char> token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token[3..5], System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    private static readonly UTF8Encoding Strict = new(false, true);

    public override void DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var pending = new List<byte>();
        void Flush()
        {
            if (pending.Count == 0) return;
            try { output.Add(Strict.GetString(pending.ToArray())); }
            catch (DecoderFallbackException) { for (var k = 0; k < pending.Count; k++) output.Add("\uFFFD"); }
            pending.Clear();
        }
        foreach (var t in tokens)
        {
            if (TryParseByte(t, out var b)) { pending.Add(b); continue; }
            Flush();
            output.Add(t);
        }
        Flush();
        tokens.Clear();
        tokens.AddRange(output);
    }

    public override byte[] TokenBytes(byte[] token, bool first) =>
        token.Length == 6 && TryParseByte(Encoding.ASCII.GetString(token), out var b) ? [b] : token;
}

/// <summary><c>Fuse</c>: all tokens into one string.</summary>
internal sealed class FuseDecoder : TokenDecoder
{
    public override void DecodeChain(List<string> tokens)
    {
        var all = string.Concat(tokens);
        tokens.Clear();
        tokens.Add(all);
    }

    public override byte[] TokenBytes(byte[] token, bool first) => token;
}

/// <summary><c>Strip</c>: up to <c>start</c> leading and <c>stop</c> trailing <c>content</c> characters off each
/// token (Llama 2 drops the space its normalizer put in front of the text). Streaming strips only the start of the
/// first token: it cannot know which token is the last.</summary>
internal sealed class StripDecoder(char content, int start, int stop) : TokenDecoder
{
    public override void DecodeChain(List<string> tokens)
    {
        for (var i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            var s = 0;
            while (s < start && s < t.Length && t[s] == content) s++;
            var e = t.Length;
            for (var k = 0; k < stop && e > s && t[e - 1] == content; k++) e--;
            tokens[i] = t[s..e];
        }
    }

    public override byte[] TokenBytes(byte[] token, bool first)
    {
        if (!first) return token;
        var c = Encoding.UTF8.GetBytes(content.ToString());
        var s = 0;
        for (var k = 0; k < start && token.AsSpan(s).StartsWith(c); k++) s += c.Length;
        return token[s..];
    }
}

/// <summary><c>Metaspace</c>: the replacement character becomes a space, except in the first token, where it is
/// dropped (unless prepend_scheme is "never").</summary>
internal sealed class MetaspaceDecoder(char replacement, PrependScheme scheme) : TokenDecoder
{
    public override void DecodeChain(List<string> tokens)
    {
        for (var i = 0; i < tokens.Count; i++)
            tokens[i] = i == 0 && scheme != PrependScheme.Never
                ? tokens[i].Replace(replacement.ToString(), "", StringComparison.Ordinal)
                : tokens[i].Replace(replacement, ' ');
    }

    public override byte[] TokenBytes(byte[] token, bool first) =>
        ReplaceBytes(token, Encoding.UTF8.GetBytes(replacement.ToString()), first && scheme != PrependScheme.Never ? [] : [(byte)' ']);
}

/// <summary><c>Sequence</c>: the decoders in order.</summary>
internal sealed class SequenceDecoder(TokenDecoder[] steps) : TokenDecoder
{
    public override void DecodeChain(List<string> tokens)
    {
        foreach (var s in steps) s.DecodeChain(tokens);
    }

    public override byte[] TokenBytes(byte[] token, bool first)
    {
        foreach (var s in steps) token = s.TokenBytes(token, first);
        return token;
    }
}

/// <summary>No decoder: tokenizers joins the tokens with single spaces.</summary>
internal sealed class NoDecoder : TokenDecoder
{
    public override void DecodeChain(List<string> tokens)
    {
        var all = string.Join(' ', tokens);
        tokens.Clear();
        tokens.Add(all);
    }

    public override byte[] TokenBytes(byte[] token, bool first) => first ? token : [(byte)' ', .. token];
}
