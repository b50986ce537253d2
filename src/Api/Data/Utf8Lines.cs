using System.Text;

namespace SlothSharp.Data;

/// <summary>The lines of a strict UTF-8 text file (.jsonl, .txt), for the corpus and dataset readers: a BOM is skipped,
/// "\n" and "\r\n" end lines, and invalid UTF-8 is an <see cref="InvalidDataException"/> naming the file, the line and the
/// byte offset.</summary>
internal static class Utf8Lines
{
    /// <summary>UTF-8 that throws on invalid bytes instead of replacing them.</summary>
    public static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Each line with its 1-based number (blank lines included; none after a final newline).</summary>
    public static IEnumerable<(int Number, string Text)> Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var start = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
        for (var lineNo = 1; start < bytes.Length; lineNo++)
        {
            var nl = Array.IndexOf(bytes, (byte)'\n', start);
            var end = nl < 0 ? bytes.Length : nl;
            var len = end - start;
            if (len > 0 && bytes[end - 1] == '\r') len--;
            string line;
            try { line = Strict.GetString(bytes, start, len); }
            catch (DecoderFallbackException e)
            {
                throw new InvalidDataException($"{path}: line {lineNo}: invalid UTF-8 (byte offset {start + e.Index} in the file)", e);
            }
            yield return (lineNo, line);
            start = nl < 0 ? bytes.Length : nl + 1;
        }
    }
}
