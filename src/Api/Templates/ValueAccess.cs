using System.Globalization;
using System.Text;

namespace SlothSharp.Templates;

/// <summary>
/// <c>x.name</c> and <c>x[key]</c> as Jinja's sandbox resolves them: attribute access tries the value's methods first
/// and falls back to the dict key; item access tries the key first and falls back to methods. A miss is an
/// <see cref="Undefined"/> carrying Jinja's message; access through an Undefined is an error. Mutating methods
/// (list.append, dict.update, ...) are refused as transformers' ImmutableSandboxedEnvironment refuses them.
/// </summary>
internal static class ValueAccess
{
    private static readonly HashSet<string> UnsafeListMethods = ["append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"];
    private static readonly HashSet<string> UnsafeDictMethods = ["clear", "pop", "popitem", "setdefault", "update"];

    private static string ObjectTypeRepr(object? obj) => obj is null ? "None" : PyOps.TypeName(obj) + " object";

    private static Undefined NoAttribute(object? obj, string name) => new($"'{ObjectTypeRepr(obj)}' has no attribute '{name}'");

    public static object? GetAttr(object? obj, string name)
    {
        switch (obj)
        {
            case Undefined u: throw PyOps.UndefinedError(u);
            case JinjaNamespace ns: return ns.Attributes.TryGetValue(name, out var v) ? v : NoAttribute(obj, name);
            case LoopContext loop: return loop.Get(name);
        }
        var method = Method(obj, name);
        if (method is not null) return method;
        if (obj is JinjaDict d && d.TryGet(name, out var value)) return value;
        return NoAttribute(obj, name);
    }

    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined u: throw PyOps.UndefinedError(u);
            case JinjaDict d when d.TryGet(key, out var value): return value;
            case JinjaList l when key is long or bool:
            {
                var i = key is bool b ? (b ? 1 : 0) : (long)key;
                if (i < 0) i += l.Count;
                if (i >= 0 && i < l.Count) return l[(int)i];
                break;
            }
            case string s when key is long idx:
            {
                var cps = PyOps.CodePoints(s);
                if (idx < 0) idx += cps.Count;
                if (idx >= 0 && idx < cps.Count) return cps[(int)idx];
                break;
            }
            case JinjaNamespace or LoopContext when key is string name:
                return GetAttr(obj, name);
        }
        if (key is string attr)
        {
            var method = Method(obj, attr);
            if (method is not null) return method;
            return NoAttribute(obj, attr);
        }
        return new Undefined($"'{ObjectTypeRepr(obj)}' has no element {PyOps.Repr(key)}");
    }

    private static object? Method(object? obj, string name)
    {
        switch (obj)
        {
            case string s: return StringMethod(s, name);
            case JinjaDict d: return DictMethod(d, name);
            case JinjaList l:
                if (UnsafeListMethods.Contains(name) && !l.IsTuple) return Refused(name, "list");
                return ListMethod(l, name);
        }
        return null;
    }

    private static NativeCallable Refused(string name, string type) => new(name, (_, _, _) =>
        throw new JinjaError($"access to attribute '{name}' of '{type}' object is unsafe."));

    private static NativeCallable Fn(string name, Func<IReadOnlyList<object?>, IReadOnlyList<KeyValuePair<string, object?>>, object?> body) =>
        new(name, (_, args, kwargs) => body(args, kwargs));

    internal static object? Arg(IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs, int index, string name, object? fallback)
    {
        if (index < args.Count) return args[index];
        foreach (var (k, v) in kwargs) if (k == name) return v;
        return fallback;
    }

    private static string StrArg(object? v, string method) => v switch
    {
        string s => s,
        Undefined u => throw PyOps.UndefinedError(u),
        _ => throw new JinjaError($"{method}() argument must be str, not {PyOps.TypeName(v)}"),
    };

    private static object? DictMethod(JinjaDict d, string name) => name switch
    {
        "items" => Fn(name, (_, _) => new JinjaList(d.Entries.Select(e => (object?)new JinjaList([e.Key, e.Value], isTuple: true)))),
        "keys" => Fn(name, (_, _) => new JinjaList(d.Entries.Select(e => e.Key))),
        "values" => Fn(name, (_, _) => new JinjaList(d.Entries.Select(e => e.Value))),
        "get" => Fn(name, (a, k) =>
        {
            if (a.Count == 0) throw new JinjaError("get expected at least 1 argument, got 0");
            return d.TryGet(a[0], out var v) ? v : Arg(a, k, 1, "default", null);
        }),
        "copy" => Fn(name, (_, _) =>
        {
            var copy = new JinjaDict();
            foreach (var (k, v) in d.Entries) copy.Set(k, v);
            return copy;
        }),
        _ when UnsafeDictMethods.Contains(name) => Refused(name, "dict"),
        _ => null,
    };

    private static object? ListMethod(JinjaList l, string name) => name switch
    {
        "index" => Fn(name, (a, _) =>
        {
            for (var i = 0; i < l.Count; i++) if (PyOps.Equal(l[i], a.Count > 0 ? a[0] : null)) return (long)i;
            throw new JinjaError($"{PyOps.Repr(a.Count > 0 ? a[0] : null)} is not in list");
        }),
        "count" => Fn(name, (a, _) => (long)l.Count(x => PyOps.Equal(x, a.Count > 0 ? a[0] : null))),
        "copy" => Fn(name, (_, _) => new JinjaList(l, l.IsTuple)),
        _ => null,
    };

    private static object? StringMethod(string s, string name) => name switch
    {
        "strip" => Fn(name, (a, k) => Strip(s, Arg(a, k, 0, "chars", null), true, true)),
        "lstrip" => Fn(name, (a, k) => Strip(s, Arg(a, k, 0, "chars", null), true, false)),
        "rstrip" => Fn(name, (a, k) => Strip(s, Arg(a, k, 0, "chars", null), false, true)),
        "upper" => Fn(name, (_, _) => s.ToUpperInvariant()),
        "lower" => Fn(name, (_, _) => s.ToLowerInvariant()),
        "title" => Fn(name, (_, _) => PythonTitle(s)),
        "capitalize" => Fn(name, (_, _) => Capitalize(s)),
        "split" => Fn(name, (a, k) => Split(s, Arg(a, k, 0, "sep", null), Arg(a, k, 1, "maxsplit", -1L))),
        "rsplit" => Fn(name, (a, k) => RSplit(s, Arg(a, k, 0, "sep", null), Arg(a, k, 1, "maxsplit", -1L))),
        "splitlines" => Fn(name, (_, _) => new JinjaList(s.Split('\n').Select(x => (object?)x.TrimEnd('\r')).Take(s.EndsWith('\n') ? s.Split('\n').Length - 1 : int.MaxValue))),
        "startswith" => Fn(name, (a, _) => Affix(s, a.Count > 0 ? a[0] : null, name, start: true)),
        "endswith" => Fn(name, (a, _) => Affix(s, a.Count > 0 ? a[0] : null, name, start: false)),
        "replace" => Fn(name, (a, k) => Replace(s, StrArg(Arg(a, k, 0, "old", null), name), StrArg(Arg(a, k, 1, "new", null), name), Arg(a, k, 2, "count", -1L))),
        "find" => Fn(name, (a, _) => (long)CpIndex(s, s.IndexOf(StrArg(a.Count > 0 ? a[0] : null, name), StringComparison.Ordinal))),
        "rfind" => Fn(name, (a, _) => (long)CpIndex(s, s.LastIndexOf(StrArg(a.Count > 0 ? a[0] : null, name), StringComparison.Ordinal))),
        "count" => Fn(name, (a, _) => (long)CountOccurrences(s, StrArg(a.Count > 0 ? a[0] : null, name))),
        "join" => Fn(name, (a, _) => string.Join(s, PyOps.Iterate(a.Count > 0 ? a[0] : null).Select(x => x is string str ? str
            : throw new JinjaError($"sequence item: expected str instance, {PyOps.TypeName(x)} found")))),
        "isdigit" => Fn(name, (_, _) => s.Length > 0 && s.All(char.IsDigit)),
        "isalpha" => Fn(name, (_, _) => s.Length > 0 && s.All(char.IsLetter)),
        "isspace" => Fn(name, (_, _) => s.Length > 0 && s.All(char.IsWhiteSpace)),
        "isupper" => Fn(name, (_, _) => s.Any(char.IsLetter) && !s.Any(char.IsLower)),
        "islower" => Fn(name, (_, _) => s.Any(char.IsLetter) && !s.Any(char.IsUpper)),
        "format" => Fn(name, (a, k) => Format(s, a, k)),
        _ => null,
    };

    private static int CpIndex(string s, int utf16Index) => utf16Index < 0 ? -1 : PyOps.CodePointLength(s[..utf16Index]);

    private static int CountOccurrences(string s, string sub)
    {
        if (sub.Length == 0) return PyOps.CodePointLength(s) + 1;
        var n = 0;
        for (var i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    private static bool IsPyWhitespace(char c) => char.IsWhiteSpace(c) || c is '\x1c' or '\x1d' or '\x1e' or '\x1f';

    public static string Strip(string s, object? chars, bool left, bool right)
    {
        Func<char, bool> strip = chars switch
        {
            null or Undefined => IsPyWhitespace,
            string cs => cs.Contains,
            _ => throw new JinjaError("strip arg must be None or str"),
        };
        int a = 0, b = s.Length;
        if (left) while (a < b && strip(s[a])) a++;
        if (right) while (b > a && strip(s[b - 1])) b--;
        return s[a..b];
    }

    private static bool Affix(string s, object? arg, string method, bool start)
    {
        bool One(object? x)
        {
            var p = StrArg(x, method);
            return start ? s.StartsWith(p, StringComparison.Ordinal) : s.EndsWith(p, StringComparison.Ordinal);
        }
        return arg is JinjaList { IsTuple: true } options ? options.Any(One) : One(arg);
    }

    private static long MaxSplit(object? v) => v switch { long l => l, null => -1, _ => throw new JinjaError("maxsplit must be an integer") };

    public static JinjaList Split(string s, object? sep, object? maxsplitArg)
    {
        var maxsplit = MaxSplit(maxsplitArg);
        var parts = new JinjaList();
        if (sep is null or Undefined)
        {
            var i = 0;
            while (true)
            {
                while (i < s.Length && IsPyWhitespace(s[i])) i++;
                if (i >= s.Length) break;
                if (maxsplit >= 0 && parts.Count == maxsplit)
                {
                    parts.Add(s[i..].TrimEnd());
                    break;
                }
                var j = i;
                while (j < s.Length && !IsPyWhitespace(s[j])) j++;
                parts.Add(s[i..j]);
                i = j;
            }
            return parts;
        }
        var separator = StrArg(sep, "split");
        if (separator.Length == 0) throw new JinjaError("empty separator");
        var start = 0;
        while (maxsplit < 0 || parts.Count < maxsplit)
        {
            var idx = s.IndexOf(separator, start, StringComparison.Ordinal);
            if (idx < 0) break;
            parts.Add(s[start..idx]);
            start = idx + separator.Length;
        }
        parts.Add(s[start..]);
        return parts;
    }

    private static JinjaList RSplit(string s, object? sep, object? maxsplitArg)
    {
        var maxsplit = MaxSplit(maxsplitArg);
        if (maxsplit < 0 || sep is null or Undefined) return Split(s, sep, maxsplitArg);
        var separator = StrArg(sep, "rsplit");
        var parts = new List<object?>();
        var end = s.Length;
        while (parts.Count < maxsplit)
        {
            var idx = end == 0 ? -1 : s.LastIndexOf(separator, end - 1, StringComparison.Ordinal);
            if (idx < 0 || idx + separator.Length > end) break;
            parts.Add(s[(idx + separator.Length)..end]);
            end = idx;
        }
        parts.Add(s[..end]);
        parts.Reverse();
        return new JinjaList(parts);
    }

    public static string Replace(string s, string old, string @new, object? countArg)
    {
        var count = countArg is long c ? c : -1;
        if (count < 0) return old.Length == 0 ? InsertEverywhere(s, @new) : s.Replace(old, @new, StringComparison.Ordinal);
        var sb = new StringBuilder();
        var pos = 0;
        for (var n = 0; n < count; n++)
        {
            var idx = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (idx < 0) break;
            sb.Append(s, pos, idx - pos).Append(@new);
            pos = idx + old.Length;
        }
        return sb.Append(s, pos, s.Length - pos).ToString();
    }

    private static string InsertEverywhere(string s, string insert) =>
        insert + string.Concat(PyOps.CodePoints(s).Select(c => (string)c! + insert));

    public static string Capitalize(string s)
    {
        if (s.Length == 0) return s;
        var first = PyOps.CodePoints(s)[0] as string ?? "";
        return first.ToUpperInvariant() + s[first.Length..].ToLowerInvariant();
    }

    /// <summary>Python's str.title(): a letter after a non-letter is upper-cased, the others lower-cased.</summary>
    public static string PythonTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        var prevCased = false;
        foreach (var c in s)
        {
            sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            prevCased = char.IsLetter(c);
        }
        return sb.ToString();
    }

    /// <summary>str.format with <c>{}</c>, <c>{0}</c>, <c>{name}</c> and <c>{{</c>/<c>}}</c>; format specs are not
    /// supported.</summary>
    private static string Format(string s, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs)
    {
        var sb = new StringBuilder();
        var auto = 0;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c == '{' && i + 1 < s.Length && s[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < s.Length && s[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c != '{') { sb.Append(c); continue; }
            var close = s.IndexOf('}', i);
            if (close < 0) throw new JinjaError("Single '{' encountered in format string");
            var field = s[(i + 1)..close];
            if (field.Contains(':') || field.Contains('!')) throw new JinjaError("format specs are not supported in str.format");
            object? value;
            if (field.Length == 0) value = auto < args.Count ? args[auto++] : throw new JinjaError("Replacement index out of range for positional args tuple");
            else if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out var idx))
                value = idx < args.Count ? args[idx] : throw new JinjaError("Replacement index out of range for positional args tuple");
            else
            {
                var found = kwargs.Where(kv => kv.Key == field).ToList();
                value = found.Count > 0 ? found[0].Value : throw new JinjaError($"KeyError: '{field}'");
            }
            sb.Append(PyOps.Str(value));
            i = close;
        }
        return sb.ToString();
    }
}
