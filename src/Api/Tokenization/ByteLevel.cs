namespace SlothSharp.Tokenization;

/// <summary>
/// GPT-2's reversible byte ↔ character map used by byte-level BPE (Llama 3, GPT-2, Qwen): every byte becomes one
/// printable character, so a vocabulary of strings can hold arbitrary bytes. Printable Latin-1 bytes map to
/// themselves; the other 68 bytes map, in byte order, to U+0100, U+0101, …
/// </summary>
internal static class ByteLevel
{
    public static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByteMap = BuildCharToByte();

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

    private static Dictionary<char, byte> BuildCharToByte()
    {
        var d = new Dictionary<char, byte>(256);
        for (var b = 0; b < 256; b++) d[ByteToChar[b]] = (byte)b;
        return d;
    }

    public static bool TryCharToByte(char c, out byte b) => CharToByteMap.TryGetValue(c, out b);

    /// <summary>The byte-level string of a piece of text: its UTF-8 bytes, each as its mapped character.</summary>
    public static string Encode(ReadOnlySpan<char> text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text.ToArray());
        return string.Create(bytes.Length, bytes, static (span, b) =>
        {
            for (var i = 0; i < b.Length; i++) span[i] = ByteToChar[b[i]];
        });
    }
}
