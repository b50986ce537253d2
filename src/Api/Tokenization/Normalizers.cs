using System.Text;
using System.Text.RegularExpressions;

namespace SlothSharp.Tokenization;

/// <summary>
/// A tokenizer.json <c>normalizer</c>: rewrites each piece of text between added tokens before pre-tokenization
/// (tokenizers applies it per piece, so e.g. Llama 2's <c>Prepend("▁")</c> also prefixes the text after a special
/// token). Only the resulting text matters for ids; offsets are not tracked.
/// </summary>
internal abstract class TextNormalizer
{
    public abstract string Normalize(string text);
}

/// <summary>NFC / NFD / NFKC / NFKD. .NET's <see cref="string.Normalize(NormalizationForm)"/> throws on U+FFFE (and on
/// lone surrogates, which <see cref="HfTokenizer"/> has already replaced by U+FFFD), so text holding U+FFFE is
/// normalized around it: U+FFFE is a starter that no normalization form changes or composes with, so normalizing the
/// parts separately gives what the Rust implementation gives for the whole.</summary>
internal sealed class UnicodeNormalizer(NormalizationForm form) : TextNormalizer
{
    public override string Normalize(string text)
    {
        // Fast path: text below these code points is already in the form: NFC changes nothing below U+0300 (the first
        // combining mark), NFD decomposes from U+00C0 ('À'), the compatibility forms from U+00A0 (no-break space).
        var limit = form switch
        {
            NormalizationForm.FormC => '\u0300',
            NormalizationForm.FormD => '\u00C0',
            _ => '\u00A0',
        };
        var simple = true;
        foreach (var c in text) if (c >= limit) { simple = false; break; }
        if (simple) return text;
        if (!text.Contains('\uFFFE')) return SafeNormalize(text);
        var parts = text.Split('\uFFFE');
        for (var i = 0; i < parts.Length; i++) parts[i] = SafeNormalize(parts[i]);
        return string.Join('\uFFFE', parts);
    }

    private string SafeNormalize(string text)
    {
        try { return text.Normalize(form); }
        // Any other code point .NET rejects: leave the text as it is rather than fail the whole encode.
        catch (ArgumentException) { return text; }
    }
}

/// <summary><c>Replace</c>: every occurrence of a literal string or every match of a regex becomes
/// <c>content</c> (Gemma and Llama 2 turn ' ' into '▁').</summary>
internal sealed class ReplaceNormalizer : TextNormalizer
{
    private readonly string? _literal;
    private readonly Regex? _regex;
    private readonly string _content;

    public ReplaceNormalizer(string? literal, Regex? regex, string content)
    {
        _literal = literal;
        _regex = regex;
        _content = content;
    }

    public override string Normalize(string text) =>
        _literal is not null ? (_literal.Length == 0 ? text : text.Replace(_literal, _content, StringComparison.Ordinal))
                             : _regex!.Replace(text, _content.Replace("$", "$$", StringComparison.Ordinal));
}

/// <summary><c>Prepend</c>: puts a prefix in front of non-empty text.</summary>
internal sealed class PrependNormalizer(string prefix) : TextNormalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

/// <summary><c>Strip</c>: removes whitespace (Unicode White_Space, as Rust's char::is_whitespace) on either side.</summary>
internal sealed class StripNormalizer(bool left, bool right) : TextNormalizer
{
    public override string Normalize(string text)
    {
        var start = 0;
        var end = text.Length;
        if (left) while (start < end && char.IsWhiteSpace(text[start])) start++;
        if (right) while (end > start && char.IsWhiteSpace(text[end - 1])) end--;
        return start == 0 && end == text.Length ? text : text[start..end];
    }
}

/// <summary><c>Lowercase</c>: .NET's invariant lower-casing (Rust's to_lowercase also maps a few characters to two,
/// e.g. U+0130 'İ' to "i̇"; .NET maps them to one).</summary>
internal sealed class LowercaseNormalizer : TextNormalizer
{
    public override string Normalize(string text) => text.ToLowerInvariant();
}

/// <summary><c>Sequence</c>: the normalizers in order.</summary>
internal sealed class SequenceNormalizer(TextNormalizer[] steps) : TextNormalizer
{
    public override string Normalize(string text)
    {
        foreach (var s in steps) text = s.Normalize(text);
        return text;
    }
}
