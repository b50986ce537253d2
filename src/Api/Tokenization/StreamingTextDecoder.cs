using System.Text;

namespace SlothSharp.Tokenization;

/// <summary>
/// Turns token ids into text one at a time for streaming generation. A byte-level token can hold part of a UTF-8
/// character (an emoji or a CJK character is often split over two or three tokens), so text is released only when
/// its UTF-8 sequences are complete; bytes that can never form a character come out as U+FFFD.
/// </summary>
public sealed class StreamingTextDecoder
{
    private readonly HfTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private readonly List<byte> _bytes = new();
    private bool _first = true;  // no token has been decoded yet (decoders such as Llama 2's Strip treat it apart)

    public StreamingTextDecoder(HfTokenizer tokenizer, bool skipSpecialTokens = true)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>The text that token <paramref name="id"/> completes (possibly empty).</summary>
    public string Push(int id)
    {
        _bytes.Clear();
        if (_tokenizer.AppendTokenBytes(id, _skipSpecialTokens, _bytes, _first)) _first = false;
        return Convert(flush: false);
    }

    /// <summary>What is left at the end of the stream (an incomplete sequence becomes U+FFFD).</summary>
    public string Flush()
    {
        _bytes.Clear();
        return Convert(flush: true);
    }

    private string Convert(bool flush)
    {
        var bytes = _bytes.ToArray();
        var chars = new char[_utf8.GetCharCount(bytes, 0, bytes.Length, flush)];
        var n = _utf8.GetChars(bytes, 0, bytes.Length, chars, 0, flush);
        return new string(chars, 0, n);
    }
}
