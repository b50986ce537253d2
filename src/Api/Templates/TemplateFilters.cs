using System.Globalization;
using System.Text;

namespace SlothSharp.Templates;

/// <summary>The filters (<c>x | name(args)</c>) chat templates use, with Jinja 3.1's semantics and transformers'
/// <c>tojson</c> (json.dumps, ensure_ascii=False).</summary>
internal static class TemplateFilters
{
    private static object? Arg(IReadOnlyList<object?> a, IReadOnlyList<KeyValuePair<string, object?>> k, int i, string name, object? fallback)
        => ValueAccess.Arg(a, k, i, name, fallback);

    public static object? Apply(Renderer r, string name, object? value, IReadOnlyList<object?> a, IReadOnlyList<KeyValuePair<string, object?>> k)
    {
        switch (name)
        {
            case "tojson": return ToJson(value, a, k);
            case "trim":
            {
                var chars = Arg(a, k, 0, "chars", null);
                return ValueAccess.Strip(PyOps.Str(value), chars, true, true);
            }
            case "length" or "count": return PyOps.Length(value);
            case "string": return PyOps.Str(value);
            case "upper": return PyOps.Str(value).ToUpperInvariant();
            case "lower": return PyOps.Str(value).ToLowerInvariant();
            case "capitalize": return ValueAccess.Capitalize(PyOps.Str(value));
            case "title": return JinjaTitle(PyOps.Str(value));
            case "replace":
            {
                var s = PyOps.Str(value);
                return ValueAccess.Replace(s, PyOps.Str(Arg(a, k, 0, "old", "")), PyOps.Str(Arg(a, k, 1, "new", "")), Arg(a, k, 2, "count", null));
            }
            case "default" or "d":
            {
                var fallback = Arg(a, k, 0, "default_value", "");
                var boolean = PyOps.Truthy(Arg(a, k, 1, "boolean", false));
                return value is Undefined || (boolean && !PyOps.Truthy(value)) ? fallback : value;
            }
            case "list": return value is string s2 ? new JinjaList(PyOps.CodePoints(s2)) : new JinjaList(PyOps.Iterate(value));
            case "first":
            {
                foreach (var item in PyOps.Iterate(value)) return item;
                return new Undefined("No first item, sequence was empty.");
            }
            case "last":
            {
                var items = PyOps.Iterate(value).ToList();
                return items.Count > 0 ? items[^1] : new Undefined("No last item, sequence was empty.");
            }
            case "join":
            {
                var sep = PyOps.Str(Arg(a, k, 0, "d", ""));
                var attribute = Arg(a, k, 1, "attribute", null);
                var items = PyOps.Iterate(value);
                if (attribute is not null) items = items.Select(x => Attribute(x, attribute));
                return string.Join(sep, items.Select(PyOps.Str));
            }
            case "items":
                if (value is Undefined) return new JinjaList();
                if (value is not JinjaDict dict) throw new JinjaError("Can only get item pairs from a mapping.");
                return new JinjaList(dict.Entries.Select(e => (object?)new JinjaList([e.Key, e.Value], isTuple: true)));
            case "selectattr" or "rejectattr": return SelectOrReject(value, a, name == "selectattr", byAttribute: true);
            case "select" or "reject": return SelectOrReject(value, a, name == "select", byAttribute: false);
            case "map": return Map(r, value, a, k);
            case "unique": return Unique(value, a, k);
            case "int": return ToInt(value, Arg(a, k, 0, "default", 0L), Arg(a, k, 1, "base", 10L));
            case "float": return ToFloat(value, Arg(a, k, 0, "default", 0.0));
            case "abs":
                return value switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), bool b => b ? 1L : 0L, _ => throw new JinjaError($"bad operand type for abs(): '{PyOps.TypeName(value)}'") };
            case "round":
            {
                var precision = Arg(a, k, 0, "precision", 0L) is long p ? (int)p : 0;
                var method = PyOps.Str(Arg(a, k, 1, "method", "common"));
                var number = value switch { long l => l, double d => d, _ => throw new JinjaError("round filter needs a number") };
                var factor = Math.Pow(10, precision);
                return method switch
                {
                    "floor" => Math.Floor(number * factor) / factor,
                    "ceil" => Math.Ceiling(number * factor) / factor,
                    _ => Math.Round(number, precision, MidpointRounding.ToEven),
                };
            }
            case "reverse":
                if (value is string rs) return string.Concat(PyOps.CodePoints(rs).AsEnumerable().Reverse());
                return new JinjaList(PyOps.Iterate(value).Reverse());
            case "sort": return Sort(value, a, k);
            case "sum":
            {
                var attribute = Arg(a, k, 0, "attribute", null);
                object? total = Arg(a, k, 1, "start", 0L);
                foreach (var item in PyOps.Iterate(value)) total = PyOps.Add(total, attribute is null ? item : Attribute(item, attribute));
                return total;
            }
            case "min" or "max":
            {
                var items = PyOps.Iterate(value).ToList();
                if (items.Count == 0) return new Undefined($"No aggregated item, sequence was empty.");
                var best = items[0];
                foreach (var item in items.Skip(1))
                {
                    var c = PyOps.Compare(item, best, "<");
                    if (name == "min" ? c < 0 : c > 0) best = item;
                }
                return best;
            }
            case "indent": return Indent(PyOps.Str(value), Arg(a, k, 0, "width", 4L), PyOps.Truthy(Arg(a, k, 1, "first", false)), PyOps.Truthy(Arg(a, k, 2, "blank", false)));
            case "safe": return value;
            case "e" or "escape": return PyOps.Str(value).Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;");
            case "wordcount": return (long)ValueAccess.Split(PyOps.Str(value), null, -1L).Count;
            case "batch": throw new JinjaError("filter 'batch' is not supported");
            default: throw new JinjaError($"No filter named '{name}'.");
        }
    }

    private static object? Attribute(object? item, object? attribute)
    {
        // Jinja's attribute paths: "a.b" and integer parts index lists.
        var value = item;
        foreach (var part in PyOps.Str(attribute).Split('.'))
            value = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var idx)
                ? ValueAccess.GetItem(value, idx) : ValueAccess.GetItem(value, part);
        return value;
    }

    private static string ToJson(object? value, IReadOnlyList<object?> a, IReadOnlyList<KeyValuePair<string, object?>> k)
    {
        var ensureAscii = PyOps.Truthy(Arg(a, k, 0, "ensure_ascii", false));
        var indentArg = Arg(a, k, 1, "indent", null);
        string? indent = indentArg switch
        {
            null => null,
            long n => new string(' ', (int)Math.Max(0, n)),
            string s => s,
            _ => throw new JinjaError("tojson indent must be an integer or a string"),
        };
        var separators = Arg(a, k, 2, "separators", null);
        string? itemSep = null, keySep = null;
        if (separators is JinjaList { Count: 2 } seps)
        {
            itemSep = PyOps.Str(seps[0]);
            keySep = PyOps.Str(seps[1]);
        }
        else if (separators is not null) throw new JinjaError("tojson separators must be a pair of strings");
        var sortKeys = PyOps.Truthy(Arg(a, k, 3, "sort_keys", false));
        return PyJson.Dumps(value, ensureAscii, indent, itemSep, keySep, sortKeys);
    }

    private static JinjaList SelectOrReject(object? value, IReadOnlyList<object?> a, bool select, bool byAttribute)
    {
        var offset = byAttribute ? 1 : 0;
        var attribute = byAttribute ? (a.Count > 0 ? a[0] : throw new JinjaError("Missing parameter for attribute name")) : null;
        string? test = a.Count > offset ? PyOps.Str(a[offset]) : null;
        var testArgs = a.Skip(offset + 1).ToList();
        var result = new JinjaList();
        foreach (var item in PyOps.Iterate(value))
        {
            var probe = byAttribute ? Attribute(item, attribute) : item;
            var ok = test is null ? PyOps.Truthy(probe) : TemplateTests.Apply(test, probe, testArgs);
            if (ok == select) result.Add(item);
        }
        return result;
    }

    private static JinjaList Map(Renderer r, object? value, IReadOnlyList<object?> a, IReadOnlyList<KeyValuePair<string, object?>> k)
    {
        var items = PyOps.Iterate(value);
        var attribute = k.FirstOrDefault(x => x.Key == "attribute");
        if (attribute.Key is not null)
        {
            var hasDefault = k.Any(x => x.Key == "default");
            var def = k.FirstOrDefault(x => x.Key == "default").Value;
            return new JinjaList(items.Select(x =>
            {
                var v = Attribute(x, attribute.Value);
                return hasDefault && v is Undefined ? def : v;
            }));
        }
        if (a.Count == 0) throw new JinjaError("map requires a filter name or attribute=");
        var filter = PyOps.Str(a[0]);
        var rest = a.Skip(1).ToList();
        return new JinjaList(items.Select(x => Apply(r, filter, x, rest, k)));
    }

    private static object? Normalize(object? v, bool caseSensitive) => !caseSensitive && v is string s ? s.ToLowerInvariant() : v;

    private static JinjaList Unique(object? value, IReadOnlyList<object?> a, IReadOnlyList<KeyValuePair<string, object?>> k)
    {
        var caseSensitive = PyOps.Truthy(Arg(a, k, 0, "case_sensitive", false));
        var attribute = Arg(a, k, 1, "attribute", null);
        var seen = new List<object?>();
        var result = new JinjaList();
        foreach (var item in PyOps.Iterate(value))
        {
            var key = Normalize(attribute is null ? item : Attribute(item, attribute), caseSensitive);
            if (seen.Any(s => PyOps.Equal(s, key))) continue;
            seen.Add(key);
            result.Add(item);
        }
        return result;
    }

    private static JinjaList Sort(object? value, IReadOnlyList<object?> a, IReadOnlyList<KeyValuePair<string, object?>> k)
    {
        var reverse = PyOps.Truthy(Arg(a, k, 0, "reverse", false));
        var caseSensitive = PyOps.Truthy(Arg(a, k, 1, "case_sensitive", false));
        var attribute = Arg(a, k, 2, "attribute", null);
        var items = PyOps.Iterate(value).ToList();
        object? Key(object? x) => Normalize(attribute is null ? x : Attribute(x, attribute), caseSensitive);
        // Stable sort, as Python's.
        var sorted = items.Select((x, i) => (x, i)).ToList();
        sorted.Sort((p, q) =>
        {
            var c = PyOps.Compare(Key(p.x), Key(q.x), "<");
            if (reverse) c = -c;
            return c != 0 ? c : p.i.CompareTo(q.i);
        });
        return new JinjaList(sorted.Select(p => p.x));
    }

    private static object? ToInt(object? value, object? fallback, object? baseArg)
    {
        var numberBase = baseArg is long b ? (int)b : 10;
        switch (value)
        {
            case long l: return l;
            case bool bo: return bo ? 1L : 0L;
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : fallback;
            case string s:
            {
                var t = s.Trim().Replace("_", "");
                try
                {
                    if (numberBase == 10 && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v)) return v;
                    if (numberBase != 10) return Convert.ToInt64(t, numberBase);
                }
                catch (FormatException) { }
                catch (ArgumentException) { }
                return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && double.IsFinite(f) ? (long)Math.Truncate(f) : fallback;
            }
            default: return fallback;
        }
    }

    private static object? ToFloat(object? value, object? fallback) => value switch
    {
        long l => (double)l,
        double d => d,
        bool b => b ? 1.0 : 0.0,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var f) => f,
        _ => fallback,
    };

    /// <summary>Jinja's |title: each word (split at whitespace, '-', and opening brackets) gets an upper-case first
    /// character and a lower-case rest.</summary>
    private static string JinjaTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        var atWordStart = true;
        foreach (var c in s)
        {
            var isSeparator = char.IsWhiteSpace(c) || c is '-' or '(' or '{' or '[' or '<';
            sb.Append(isSeparator ? c : atWordStart ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            atWordStart = isSeparator;
        }
        return sb.ToString();
    }

    private static string Indent(string s, object? width, bool first, bool blank)
    {
        var pad = width switch { long w => new string(' ', (int)w), string p => p, _ => "    " };
        var lines = s.Split('\n');
        var sb = new StringBuilder();
        for (var i = 0; i < lines.Length; i++)
        {
            if (i > 0) sb.Append('\n');
            var line = lines[i];
            var indentThis = (i > 0 || first) && (blank || line.Trim().Length > 0);
            if (indentThis) sb.Append(pad);
            sb.Append(line);
        }
        return sb.ToString();
    }
}
