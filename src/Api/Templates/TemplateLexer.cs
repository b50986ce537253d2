using System.Globalization;
using System.Text;

namespace SlothSharp.Templates;

internal enum TokenKind { Text, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End }

/// <summary>One lexical token; <see cref="Value"/> is the text, the decoded string literal, or the operator.</summary>
internal readonly record struct Token(TokenKind Kind, string Value, int Line, int Column)
{
    public override string ToString() => Kind switch
    {
        TokenKind.End => "end of template",
        TokenKind.VariableEnd => "'}}'",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.String => $"string '{Value}'",
        _ => $"'{Value}'",
    };
}

/// <summary>
/// Splits a template into text and tag tokens with Jinja's whitespace rules as transformers configures them:
/// <c>trim_blocks</c> (the first newline after a block or comment tag is dropped), <c>lstrip_blocks</c> (spaces and
/// tabs before a block or comment tag at the start of a line are dropped, unless the tag opens with <c>+</c>),
/// <c>-</c> markers that strip all whitespace on that side, newline normalisation to \n and the removal of one
/// trailing newline of the source (keep_trailing_newline=False).
/// </summary>
internal sealed class TemplateLexer
{
    private readonly string _src;
    private readonly string _name;
    private readonly List<Token> _tokens = [];
    private int _pos;
    private int _line = 1;
    private int _lineStart;

    private TemplateLexer(string source, string name)
    {
        _src = source;
        _name = name;
    }

    public static List<Token> Tokenize(string source, string name)
    {
        source = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (source.EndsWith('\n')) source = source[..^1];
        var lexer = new TemplateLexer(source, name);
        lexer.Run();
        return lexer._tokens;
    }

    private int Column => _pos - _lineStart + 1;

    private TemplateSyntaxException Error(string message) => new(message, _name, _line, Column);

    private void Advance(int count)
    {
        for (var i = 0; i < count; i++)
        {
            if (_src[_pos] == '\n') { _line++; _lineStart = _pos + 1; }
            _pos++;
        }
    }

    private void Run()
    {
        var lineStarting = true;
        while (_pos < _src.Length)
        {
            var open = FindTagStart(_pos);
            var textEnd = open < 0 ? _src.Length : open;
            var text = _src[_pos..textEnd];
            if (open < 0)
            {
                EmitText(text, _line, Column);
                Advance(text.Length);
                break;
            }
            var kind = _src[open + 1];
            var marker = open + 2 < _src.Length ? _src[open + 2] : '\0';
            if (marker == '-') text = text.TrimEnd();
            else if (marker != '+' && kind != '{')
            {
                // lstrip_blocks: drop the spaces/tabs between the line start and a block or comment tag.
                var lineBegin = text.LastIndexOf('\n') + 1;
                if ((lineBegin > 0 || lineStarting) && text.AsSpan(lineBegin).IndexOfAnyExcept(' ', '\t') < 0)
                    text = text[..lineBegin];
            }
            EmitText(text, _line, Column);
            Advance(textEnd - _pos);
            var tagLine = _line;
            var tagCol = Column;
            Advance(marker is '-' or '+' ? 3 : 2);
            string consumedEnd;
            if (kind == '#')
            {
                var close = _src.IndexOf("#}", _pos, StringComparison.Ordinal);
                if (close < 0) throw new TemplateSyntaxException("missing end of comment tag", _name, tagLine, tagCol);
                var stripAfter = close > _pos && _src[close - 1] == '-';
                Advance(close + 2 - _pos);
                consumedEnd = "#}" + SkipAfterTag(stripAfter, trim: true);
            }
            else if (kind == '%' && TryRawBlock(out consumedEnd)) { }
            else
            {
                var isBlock = kind == '%';
                _tokens.Add(new Token(isBlock ? TokenKind.BlockBegin : TokenKind.VariableBegin, isBlock ? "{%" : "{{", tagLine, tagCol));
                consumedEnd = LexTagBody(isBlock);
            }
            lineStarting = consumedEnd.EndsWith('\n');
        }
        _tokens.Add(new Token(TokenKind.End, "", _line, Column));
    }

    private void EmitText(string text, int line, int col)
    {
        if (text.Length > 0) _tokens.Add(new Token(TokenKind.Text, text, line, col));
    }

    private int FindTagStart(int from)
    {
        for (var i = from; i < _src.Length - 1; i++)
            if (_src[i] == '{' && _src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>After a closing delimiter: <c>-</c> strips all following whitespace; otherwise trim_blocks drops one
    /// newline after a block or comment. Returns what was consumed.</summary>
    private string SkipAfterTag(bool strip, bool trim)
    {
        var start = _pos;
        if (strip) { while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos])) Advance(1); }
        else if (trim && _pos < _src.Length && _src[_pos] == '\n') Advance(1);
        return _src[start.._pos];
    }

    /// <summary><c>{% raw %}...{% endraw %}</c>: the body is emitted verbatim.</summary>
    private bool TryRawBlock(out string consumedEnd)
    {
        consumedEnd = "";
        var p = _pos;
        while (p < _src.Length && _src[p] is ' ' or '\t' or '\n') p++;
        if (string.CompareOrdinal(_src, p, "raw", 0, 3) != 0) return false;
        p += 3;
        while (p < _src.Length && _src[p] is ' ' or '\t' or '\n') p++;
        var strip = p < _src.Length && _src[p] == '-';
        if (strip) p++;
        if (string.CompareOrdinal(_src, p, "%}", 0, 2) != 0) return false;
        Advance(p + 2 - _pos);
        SkipAfterTag(strip, trim: true);
        var bodyLine = _line;
        var bodyCol = Column;
        var search = _pos;
        while (true)
        {
            var open = _src.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw new TemplateSyntaxException("missing end of raw directive ({% endraw %})", _name, bodyLine, bodyCol);
            var q = open + 2;
            var stripBefore = q < _src.Length && _src[q] == '-';
            if (q < _src.Length && _src[q] is '-' or '+') q++;
            while (q < _src.Length && _src[q] is ' ' or '\t' or '\n') q++;
            if (string.CompareOrdinal(_src, q, "endraw", 0, 6) != 0) { search = open + 2; continue; }
            q += 6;
            while (q < _src.Length && _src[q] is ' ' or '\t' or '\n') q++;
            var stripAfter = q < _src.Length && _src[q] == '-';
            if (stripAfter) q++;
            if (string.CompareOrdinal(_src, q, "%}", 0, 2) != 0) { search = open + 2; continue; }
            var body = _src[_pos..open];
            if (stripBefore) body = body.TrimEnd();
            else
            {
                var lineBegin = body.LastIndexOf('\n') + 1;
                if (body.AsSpan(lineBegin).IndexOfAnyExcept(' ', '\t') < 0) body = body[..lineBegin];
            }
            EmitText(body, bodyLine, bodyCol);
            Advance(q + 2 - _pos);
            consumedEnd = "%}" + SkipAfterTag(stripAfter, trim: true);
            return true;
        }
    }

    private string LexTagBody(bool isBlock)
    {
        var close = isBlock ? '%' : '}';
        var depth = 0;
        while (true)
        {
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos])) Advance(1);
            if (_pos >= _src.Length) throw Error($"unexpected end of template, expected '{(isBlock ? "%}" : "}}")}'");
            var c = _src[_pos];
            var strip = c == '-' && At(_pos + 1, close) && At(_pos + 2, '}');
            if (depth == 0 && (strip || (c == close && At(_pos + 1, '}'))))
            {
                var line = _line;
                var col = Column;
                Advance(strip ? 3 : 2);
                _tokens.Add(new Token(isBlock ? TokenKind.BlockEnd : TokenKind.VariableEnd, isBlock ? "%}" : "}}", line, col));
                return (isBlock ? "%}" : "}}") + SkipAfterTag(strip, trim: isBlock);
            }
            var tokLine = _line;
            var tokCol = Column;
            if (char.IsLetter(c) || c == '_')
            {
                var start = _pos;
                while (_pos < _src.Length && (char.IsLetterOrDigit(_src[_pos]) || _src[_pos] == '_')) Advance(1);
                _tokens.Add(new Token(TokenKind.Name, _src[start.._pos], tokLine, tokCol));
            }
            else if (char.IsAsciiDigit(c)) LexNumber(tokLine, tokCol);
            else if (c is '\'' or '"') _tokens.Add(new Token(TokenKind.String, LexString(c), tokLine, tokCol));
            else
            {
                string op;
                var two = _pos + 1 < _src.Length ? _src.Substring(_pos, 2) : "";
                if (two is "//" or "**" or "==" or "!=" or "<=" or ">=") op = two;
                else if ("+-*/%~<>=()[]{},.:|".Contains(c)) op = c.ToString();
                else throw Error($"unexpected character '{c}'");
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}") depth--;
                if (depth < 0) throw Error($"unexpected '{op}'");
                Advance(op.Length);
                _tokens.Add(new Token(TokenKind.Operator, op, tokLine, tokCol));
            }
        }
    }

    private bool At(int i, char c) => i < _src.Length && _src[i] == c;

    private void LexNumber(int line, int col)
    {
        var start = _pos;
        void Digits() { while (_pos < _src.Length && (char.IsAsciiDigit(_src[_pos]) || (_src[_pos] == '_' && _pos + 1 < _src.Length && char.IsAsciiDigit(_src[_pos + 1])))) Advance(1); }
        Digits();
        var isFloat = false;
        if (At(_pos, '.') && _pos + 1 < _src.Length && char.IsAsciiDigit(_src[_pos + 1]))
        {
            isFloat = true;
            Advance(1);
            Digits();
        }
        if (_pos < _src.Length && _src[_pos] is 'e' or 'E')
        {
            var p = _pos + 1;
            if (p < _src.Length && _src[p] is '+' or '-') p++;
            if (p < _src.Length && char.IsAsciiDigit(_src[p]))
            {
                isFloat = true;
                Advance(p - _pos);
                Digits();
            }
        }
        var text = _src[start.._pos].Replace("_", "");
        _tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, text, line, col));
    }

    /// <summary>A string literal with Python's escapes (\n, \t, \\, \', \", \xNN, \uNNNN, \UNNNNNNNN, octal); an
    /// unknown escape keeps its backslash, as Python does.</summary>
    private string LexString(char quote)
    {
        var startLine = _line;
        var startCol = Column;
        Advance(1);
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _src.Length) throw new TemplateSyntaxException("unterminated string literal", _name, startLine, startCol);
            var c = _src[_pos];
            if (c == quote) { Advance(1); return sb.ToString(); }
            if (c != '\\') { sb.Append(c); Advance(1); continue; }
            if (_pos + 1 >= _src.Length) throw new TemplateSyntaxException("unterminated string literal", _name, startLine, startCol);
            var e = _src[_pos + 1];
            Advance(2);
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\n': break;
                case 'x': sb.Append(HexEscape(2)); break;
                case 'u': sb.Append(HexEscape(4)); break;
                case 'U': sb.Append(HexEscape(8)); break;
                case >= '0' and <= '7':
                {
                    var value = e - '0';
                    for (var k = 0; k < 2 && _pos < _src.Length && _src[_pos] is >= '0' and <= '7'; k++)
                    {
                        value = value * 8 + (_src[_pos] - '0');
                        Advance(1);
                    }
                    sb.Append((char)value);
                    break;
                }
                default: sb.Append('\\').Append(e); break;
            }
        }
    }

    private string HexEscape(int digits)
    {
        if (_pos + digits > _src.Length || !int.TryParse(_src.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var value))
            throw Error($"truncated \\{(digits == 2 ? 'x' : digits == 4 ? 'u' : 'U')} escape in string literal");
        Advance(digits);
        return char.ConvertFromUtf32(value);
    }
}
