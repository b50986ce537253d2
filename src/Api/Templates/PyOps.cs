using System.Globalization;
using System.Text;

namespace SlothSharp.Templates;

/// <summary>Python semantics for template values: truthiness, equality and ordering, arithmetic, <c>str()</c> and
/// <c>repr()</c>, iteration, <c>len()</c> and slicing (both by code point, as Python counts). Chat templates are
/// Python-rendered in training pipelines, so these must match CPython byte for byte.</summary>
internal static class PyOps
{
    public static JinjaError UndefinedError(Undefined u) => new(u.Hint);

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        JinjaList l => l.IsTuple ? "tuple" : "list",
        JinjaDict => "dict",
        JinjaNamespace => "Namespace",
        IJinjaCallable => "function",
        Undefined => "Undefined",
        LoopContext => "LoopContext",
        _ => v.GetType().Name,
    };

    public static bool Truthy(object? v) => v switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        JinjaList l => l.Count > 0,
        JinjaDict d => d.Count > 0,
        Undefined => false,
        _ => true,
    };

    public static bool IsNumber(object? v) => v is long or double or bool;

    private static double AsDouble(object? v) => v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => throw new InvalidOperationException() };
    private static long AsLong(object? v) => v switch { long l => l, bool b => b ? 1 : 0, _ => throw new InvalidOperationException() };
    private static bool IsIntLike(object? v) => v is long or bool;

    public static bool Equal(object? a, object? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
            return IsIntLike(a) && IsIntLike(b) ? AsLong(a) == AsLong(b) : AsDouble(a) == AsDouble(b);
        switch (a)
        {
            case string sa: return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case JinjaList la:
                if (b is not JinjaList lb || la.IsTuple != lb.IsTuple || la.Count != lb.Count) return false;
                for (var i = 0; i < la.Count; i++) if (!Equal(la[i], lb[i])) return false;
                return true;
            case JinjaDict da:
                if (b is not JinjaDict db || da.Count != db.Count) return false;
                foreach (var (k, v) in da.Entries)
                    if (!db.TryGet(k, out var other) || !Equal(v, other)) return false;
                return true;
            case Undefined: return b is Undefined;
            default: return ReferenceEquals(a, b);
        }
    }

    /// <summary>Python's ordering (&lt;, &gt;, ...): numbers with numbers, strings by code point, lists
    /// lexicographically; anything else is a TypeError.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (a is Undefined ua) throw UndefinedError(ua);
        if (b is Undefined ub) throw UndefinedError(ub);
        if (IsNumber(a) && IsNumber(b))
            return IsIntLike(a) && IsIntLike(b) ? AsLong(a).CompareTo(AsLong(b)) : AsDouble(a).CompareTo(AsDouble(b));
        if (a is string sa && b is string sb) return Math.Sign(string.CompareOrdinal(sa, sb));
        if (a is JinjaList la && b is JinjaList lb && la.IsTuple == lb.IsTuple)
        {
            for (var i = 0; i < Math.Min(la.Count, lb.Count); i++)
                if (!Equal(la[i], lb[i])) return Compare(la[i], lb[i], op);
            return la.Count.CompareTo(lb.Count);
        }
        throw new JinjaError($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static void ThrowIfUndefined(object? a, object? b)
    {
        if (a is Undefined ua) throw UndefinedError(ua);
        if (b is Undefined ub) throw UndefinedError(ub);
    }

    private static JinjaError Unsupported(string op, object? a, object? b) =>
        new($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");

    public static object? Add(object? a, object? b)
    {
        ThrowIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
            return IsIntLike(a) && IsIntLike(b) ? (object)(AsLong(a) + AsLong(b)) : AsDouble(a) + AsDouble(b);
        if (a is string sa)
            return b is string sb ? sa + sb : throw new JinjaError($"can only concatenate str (not \"{TypeName(b)}\") to str");
        if (a is JinjaList la && b is JinjaList lb && la.IsTuple == lb.IsTuple)
            return new JinjaList(la.Concat(lb), la.IsTuple);
        if (a is JinjaList l1 && !l1.IsTuple)
            throw new JinjaError($"can only concatenate list (not \"{TypeName(b)}\") to list");
        throw Unsupported("+", a, b);
    }

    public static object? Arithmetic(string op, object? a, object? b)
    {
        ThrowIfUndefined(a, b);
        if (op == "*")
        {
            if (a is string s && IsIntLike(b)) return Repeat(s, AsLong(b));
            if (b is string s2 && IsIntLike(a)) return Repeat(s2, AsLong(a));
            if (a is JinjaList l && IsIntLike(b)) return RepeatList(l, AsLong(b));
            if (b is JinjaList l2 && IsIntLike(a)) return RepeatList(l2, AsLong(a));
        }
        if (!IsNumber(a) || !IsNumber(b)) throw Unsupported(op, a, b);
        var ints = IsIntLike(a) && IsIntLike(b);
        switch (op)
        {
            case "-": return ints ? (object)(AsLong(a) - AsLong(b)) : AsDouble(a) - AsDouble(b);
            case "*": return ints ? (object)(AsLong(a) * AsLong(b)) : AsDouble(a) * AsDouble(b);
            case "/":
                if (AsDouble(b) == 0) throw new JinjaError("division by zero");
                return AsDouble(a) / AsDouble(b);
            case "//":
                if (AsDouble(b) == 0) throw new JinjaError(ints ? "integer division or modulo by zero" : "float floor division by zero");
                if (ints)
                {
                    long x = AsLong(a), y = AsLong(b), q = x / y;
                    if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
                    return q;
                }
                return Math.Floor(AsDouble(a) / AsDouble(b));
            case "%":
                if (AsDouble(b) == 0) throw new JinjaError(ints ? "integer division or modulo by zero" : "float modulo");
                if (ints)
                {
                    long x = AsLong(a), y = AsLong(b), r = x % y;
                    if (r != 0 && ((r < 0) != (y < 0))) r += y;
                    return r;
                }
                {
                    double x = AsDouble(a), y = AsDouble(b), r = x % y;
                    if (r != 0 && ((r < 0) != (y < 0))) r += y;
                    return r;
                }
            case "**":
                if (ints && AsLong(b) >= 0)
                {
                    long result = 1, bas = AsLong(a);
                    for (var e = AsLong(b); e > 0; e--) result *= bas;
                    return result;
                }
                return Math.Pow(AsDouble(a), AsDouble(b));
        }
        throw new JinjaError($"unknown operator {op}");
    }

    private static string Repeat(string s, long n) => n <= 0 ? "" : new StringBuilder(s.Length * (int)n).Insert(0, s, (int)n).ToString();

    private static JinjaList RepeatList(JinjaList l, long n)
    {
        var r = new JinjaList(Enumerable.Empty<object?>(), l.IsTuple);
        for (var i = 0; i < n; i++) r.AddRange(l);
        return r;
    }

    public static object? Negate(object? v) => v switch
    {
        long l => (object)(-l),
        double d => -d,
        bool b => b ? -1L : 0L,
        Undefined u => throw UndefinedError(u),
        _ => throw new JinjaError($"bad operand type for unary -: '{TypeName(v)}'"),
    };

    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                if (item is string sub) return s.Contains(sub, StringComparison.Ordinal);
                if (item is Undefined u) throw UndefinedError(u);
                throw new JinjaError($"'in <string>' requires string as left operand, not {TypeName(item)}");
            case JinjaList l: return l.Any(x => Equal(x, item));
            case JinjaDict d: return d.ContainsKey(item);
            case Undefined: return false;
            default: throw new JinjaError($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    /// <summary>Python iteration: list items, dict keys, string characters (code points); Undefined is empty.</summary>
    public static IEnumerable<object?> Iterate(object? v) => v switch
    {
        JinjaList l => l.ToList(),
        JinjaDict d => d.Entries.Select(e => e.Key).ToList(),
        string s => CodePoints(s),
        Undefined => [],
        _ => throw new JinjaError($"'{TypeName(v)}' object is not iterable"),
    };

    public static List<object?> CodePoints(string s)
    {
        var result = new List<object?>(s.Length);
        foreach (var r in s.EnumerateRunes()) result.Add(r.ToString());
        return result;
    }

    public static int CodePointLength(string s)
    {
        var n = 0;
        foreach (var c in s) if (!char.IsLowSurrogate(c)) n++;
        return n;
    }

    public static long Length(object? v) => v switch
    {
        string s => CodePointLength(s),
        JinjaList l => l.Count,
        JinjaDict d => d.Count,
        Undefined => 0,
        JinjaNamespace => throw new JinjaError("object of type 'Namespace' has no len()"),
        _ => throw new JinjaError($"object of type '{TypeName(v)}' has no len()"),
    };

    /// <summary>Python's <c>str()</c>, which is what <c>{{ x }}</c> prints.</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        null => "None",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        _ => Repr(v),
    };

    /// <summary>Python's <c>repr()</c>: what lists and dicts print their items with.</summary>
    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, v);
        return sb.ToString();
    }

    private static void AppendRepr(StringBuilder sb, object? v)
    {
        switch (v)
        {
            case string s: AppendStringRepr(sb, s); break;
            case JinjaList l:
                sb.Append(l.IsTuple ? '(' : '[');
                for (var i = 0; i < l.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    AppendRepr(sb, l[i]);
                }
                if (l.IsTuple && l.Count == 1) sb.Append(',');
                sb.Append(l.IsTuple ? ')' : ']');
                break;
            case JinjaDict d:
                sb.Append('{');
                var first = true;
                foreach (var (k, val) in d.Entries)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    AppendRepr(sb, k);
                    sb.Append(": ");
                    AppendRepr(sb, val);
                }
                sb.Append('}');
                break;
            case Undefined: sb.Append("Undefined"); break;
            case JinjaNamespace ns:
                sb.Append("<Namespace ");
                var nd = new JinjaDict();
                foreach (var (k, val) in ns.Attributes) nd.Set(k, val);
                AppendRepr(sb, nd);
                sb.Append('>');
                break;
            case IJinjaCallable c: sb.Append("<function ").Append(c.Name).Append('>'); break;
            default: sb.Append(Str(v)); break;
        }
    }

    private static void AppendStringRepr(StringBuilder sb, string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        sb.Append(quote);
        foreach (var rune in s.EnumerateRunes())
        {
            var c = rune.Value;
            if (c == quote || c == '\\') sb.Append('\\').Append((char)c);
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(c.ToString("x2", CultureInfo.InvariantCulture));
            else if (c < 0x80 || IsPrintable(rune)) sb.Append(rune.ToString());
            else if (c < 0x100) sb.Append("\\x").Append(c.ToString("x2", CultureInfo.InvariantCulture));
            else if (c < 0x10000) sb.Append("\\u").Append(c.ToString("x4", CultureInfo.InvariantCulture));
            else sb.Append("\\U").Append(c.ToString("x8", CultureInfo.InvariantCulture));
        }
        sb.Append(quote);
    }

    /// <summary>Python's str.isprintable for one character: not a control, format, separator (other than the ASCII
    /// space), surrogate, private-use or unassigned code point.</summary>
    private static bool IsPrintable(Rune rune)
    {
        if (rune.Value == ' ') return true;
        return Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
                or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator
                or UnicodeCategory.SpaceSeparator => false,
            _ => true,
        };
    }

    /// <summary>Python's <c>repr(float)</c>: the shortest round-trip digits, fixed notation for decimal exponents in
    /// [-4, 16), otherwise <c>1e-05</c> / <c>1.5e+16</c> style.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // Shortest round-trip digits come from "R"; parse them into digits + exponent ourselves.
        var shortest = d.ToString("R", CultureInfo.InvariantCulture);
        var negative = shortest.StartsWith('-');
        if (negative) shortest = shortest[1..];
        var exp = 0;
        var ePos = shortest.IndexOfAny(['E', 'e']);
        var mantissa = shortest;
        if (ePos >= 0)
        {
            exp = int.Parse(shortest[(ePos + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            mantissa = shortest[..ePos];
        }
        var dot = mantissa.IndexOf('.');
        var intPart = dot >= 0 ? mantissa[..dot] : mantissa;
        var fracPart = dot >= 0 ? mantissa[(dot + 1)..] : "";
        var digits = (intPart + fracPart).TrimStart('0');
        var leadingZeros = (intPart + fracPart).Length - digits.Length;
        // value = 0.digits * 10^decpt
        var decpt = intPart.Length + exp - leadingZeros;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        var e10 = decpt - 1;
        var sb = new StringBuilder();
        if (negative) sb.Append('-');
        if (e10 < -4 || e10 >= 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1) sb.Append('.').Append(digits, 1, digits.Length - 1);
            sb.Append('e').Append(e10 < 0 ? '-' : '+').Append(Math.Abs(e10).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (decpt <= 0)
        {
            sb.Append("0.").Append('0', -decpt).Append(digits);
        }
        else if (digits.Length <= decpt)
        {
            sb.Append(digits).Append('0', decpt - digits.Length).Append(".0");
        }
        else
        {
            sb.Append(digits, 0, decpt).Append('.').Append(digits, decpt, digits.Length - decpt);
        }
        return sb.ToString();
    }

    /// <summary>A Python slice <c>[start:stop:step]</c> of a list, tuple or string (by code point).</summary>
    public static object? Slice(object? v, object? start, object? stop, object? step)
    {
        if (v is Undefined u) throw UndefinedError(u);
        long? Opt(object? x) => x switch
        {
            null or Undefined => null,
            long l => l,
            bool b => b ? 1 : 0,
            _ => throw new JinjaError("slice indices must be integers or None"),
        };
        var st = Opt(step) ?? 1;
        if (st == 0) throw new JinjaError("slice step cannot be zero");
        List<object?> items;
        string? str = v as string;
        if (str is not null) items = CodePoints(str);
        else if (v is JinjaList l) items = l;
        else throw new JinjaError($"'{TypeName(v)}' object is not subscriptable");
        long n = items.Count;
        long Clamp(long? x, bool isStart)
        {
            if (x is null) return st > 0 ? (isStart ? 0 : n) : (isStart ? n - 1 : -1);
            var i = x.Value < 0 ? x.Value + n : x.Value;
            if (st > 0) return Math.Clamp(i, 0, n);
            return Math.Clamp(i, -1, n - 1);
        }
        var from = Clamp(Opt(start), true);
        var to = Clamp(Opt(stop), false);
        var picked = new List<object?>();
        if (st > 0) for (var i = from; i < to; i += st) picked.Add(items[(int)i]);
        else for (var i = from; i > to; i += st) picked.Add(items[(int)i]);
        if (str is not null) return string.Concat(picked.Select(x => (string)x!));
        return new JinjaList(picked, ((JinjaList)v!).IsTuple);
    }
}
