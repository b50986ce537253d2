using System.Globalization;
using System.Text;

namespace SlothSharp.Templates;

/// <summary>Python's <c>json.dumps</c>, as transformers installs it for the <c>tojson</c> filter (ensure_ascii=False,
/// optional indent, separators and sort_keys). The default separators are Python's: <c>", "</c> and <c>": "</c>
/// without indent, <c>","</c> and <c>": "</c> with one — so <c>{"a": 1, "b": [1, 2]}</c>, not compact JSON.</summary>
internal static class PyJson
{
    public static string Dumps(object? value, bool ensureAscii, string? indent, string? itemSeparator, string? keySeparator, bool sortKeys)
    {
        itemSeparator ??= indent is null ? ", " : ",";
        keySeparator ??= ": ";
        var sb = new StringBuilder();
        Write(sb, value, ensureAscii, indent, itemSeparator, keySeparator, sortKeys, 0);
        return sb.ToString();
    }

    private static void NewLine(StringBuilder sb, string? indent, int level)
    {
        if (indent is null) return;
        sb.Append('\n');
        for (var i = 0; i < level; i++) sb.Append(indent);
    }

    private static void Write(StringBuilder sb, object? v, bool ascii, string? indent, string itemSep, string keySep, bool sort, int level)
    {
        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FloatText(d)); break;
            case string s: WriteString(sb, s, ascii); break;
            case JinjaList list:
                if (list.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(itemSep);
                    NewLine(sb, indent, level + 1);
                    Write(sb, list[i], ascii, indent, itemSep, keySep, sort, level + 1);
                }
                NewLine(sb, indent, level);
                sb.Append(']');
                break;
            case JinjaDict dict:
                if (dict.Count == 0) { sb.Append("{}"); break; }
                var entries = dict.Entries.Select(e => (Key: KeyText(e.Key), e.Value)).ToList();
                if (sort) entries = entries.OrderBy(e => e.Key, StringComparer.Ordinal).ToList();
                sb.Append('{');
                for (var i = 0; i < entries.Count; i++)
                {
                    if (i > 0) sb.Append(itemSep);
                    NewLine(sb, indent, level + 1);
                    WriteString(sb, entries[i].Key, ascii);
                    sb.Append(keySep);
                    Write(sb, entries[i].Value, ascii, indent, itemSep, keySep, sort, level + 1);
                }
                NewLine(sb, indent, level);
                sb.Append('}');
                break;
            default:
                throw new JinjaError($"Object of type {PyOps.TypeName(v)} is not JSON serializable");
        }
    }

    private static string FloatText(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : PyOps.FloatRepr(d);

    private static string KeyText(object? key) => key switch
    {
        string s => s,
        null => "null",
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatText(d),
        _ => throw new JinjaError($"keys must be str, int, float, bool or None, not {PyOps.TypeName(key)}"),
    };

    private static void WriteString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    // UTF-16 units map one to one onto Python's \uXXXX escapes (surrogate pairs included).
                    if (c < 0x20 || (ascii && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
