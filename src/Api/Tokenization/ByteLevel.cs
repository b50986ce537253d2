using System.Buffers;
using System.Text;

namespace SlothSharp.Tokenization;

/// <summary>
/// GPT-2's reversible byte ↔ character map used by byte-level BPE (Llama 3, GPT-2, Qwen): every byte becomes one
/// printable character, so a vocabulary of strings can hold arbitrary bytes. Printable Latin-1 bytes map to
/// themselves; the other 68 bytes map, in byte order, to U+0100, U+0101, …
/// </summary>
internal static class ByteLevel
{
    public static readonly char[] ByteToChar = BuildByteToChar();
    // Index: a character below U+0144; value: its byte + 1, or 0 for a character outside the map.
    private static readonly short[] CharToByte = BuildCharToByte();

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var table = new short[0x144];
        for (var b = 0; b < 256; b++) table[ByteToChar[b]] = (short)(b + 1);
        return table;
    }

    public static bool TryCharToByte(char c, out byte b)
    {
        var v = c < CharToByte.Length ? CharToByte[c] : (short)0;
        b = (byte)(v - 1);
        return v != 0;
    }

    /// <summary>The byte-level string of a piece of text: its UTF-8 bytes, each as its mapped character.</summary>
    public static string Encode(ReadOnlySpan<char> text)
    {
        var max = Encoding.UTF8.GetMaxByteCount(text.Length);
        var rented = ArrayPool<byte>.Shared.Rent(max);
        try
        {
            var n = Encoding.UTF8.GetBytes(text, rented);
            return string.Create(n, rented, static (span, b) =>
            {
                for (var i = 0; i < span.Length; i++) span[i] = ByteToChar[b[i]];
            });
        }
        finally { ArrayPool<byte>.Shared.Return(rented); }
    }

    /// <summary>The bytes of one token as tokenizers' ByteLevel decoder reads it: each character's byte, or, if any
    /// character is outside the map, the token's own UTF-8.</summary>
    public static void AppendBytes(string token, List<byte> output)
    {
        var start = output.Count;
        foreach (var c in token)
        {
            if (TryCharToByte(c, out var b)) { output.Add(b); continue; }
            output.RemoveRange(start, output.Count - start);
            output.AddRange(Encoding.UTF8.GetBytes(token));
            return;
        }
    }
}
