using System.Text.Json.Nodes;

namespace SlothSharp.Templates;

// The template engine's value model. Values are plain .NET objects of a closed set of types, so a template can only
// ever see JSON-like data (the sandbox): null is Python's None, bool, long (int), double (float), string, JinjaList
// (list or tuple), JinjaDict (ordered dict), JinjaNamespace, IJinjaCallable (macros, globals, bound methods) and
// Undefined. Nothing else is ever placed in a scope, so no .NET member can be reached from a template.

/// <summary>Jinja's default Undefined: prints as "", is falsy, iterates as empty; any other use is an error that names
/// the missing variable or member.</summary>
internal sealed class Undefined
{
    public static readonly Undefined Plain = new("undefined value");

    public Undefined(string hint) { Hint = hint; }

    /// <summary>What was missing, as Jinja words it ("'x' is undefined", "'dict object' has no attribute 'y'").</summary>
    public string Hint { get; }
}

/// <summary>A Python list, or a tuple when <see cref="IsTuple"/> (tuples print with round brackets).</summary>
internal sealed class JinjaList : List<object?>
{
    public JinjaList() { }
    public JinjaList(IEnumerable<object?> items, bool isTuple = false) : base(items) { IsTuple = isTuple; }
    public bool IsTuple { get; }
}

/// <summary>A Python dict: insertion-ordered, keys compared with Python equality of their values.</summary>
internal sealed class JinjaDict
{
    private readonly List<KeyValuePair<object?, object?>> _entries = [];
    private readonly Dictionary<KeyBox, int> _index = new();

    public int Count => _entries.Count;
    public IEnumerable<KeyValuePair<object?, object?>> Entries => _entries;

    public bool TryGet(object? key, out object? value)
    {
        if (_index.TryGetValue(new KeyBox(key), out var i)) { value = _entries[i].Value; return true; }
        value = null;
        return false;
    }

    public void Set(object? key, object? value)
    {
        var box = new KeyBox(key);
        if (_index.TryGetValue(box, out var i)) _entries[i] = new(_entries[i].Key, value);
        else { _index[box] = _entries.Count; _entries.Add(new(key, value)); }
    }

    public bool ContainsKey(object? key) => _index.ContainsKey(new KeyBox(key));

    /// <summary>Hash key with Python semantics: 1, 1.0 and True are the same key.</summary>
    private readonly record struct KeyBox(object? Key)
    {
        public bool Equals(KeyBox other) => PyOps.Equal(Key, other.Key);
        public override int GetHashCode() => Key switch
        {
            null => 0,
            bool b => b ? 1 : 0,
            long l => l.GetHashCode(),
            double d when d == Math.Floor(d) && Math.Abs(d) < 9e18 => ((long)d).GetHashCode(),
            double d => d.GetHashCode(),
            string s => StringComparer.Ordinal.GetHashCode(s),
            _ => 1,
        };
    }
}

/// <summary>The object <c>namespace(...)</c> makes: the one value a template may mutate (<c>{% set ns.x = 1 %}</c>).</summary>
internal sealed class JinjaNamespace
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>Something a template can call: a macro, a global function, a bound method or <c>caller</c>.</summary>
internal interface IJinjaCallable
{
    string Name { get; }
    object? Invoke(Renderer renderer, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs);
}

/// <summary>A built-in callable (global function or a bound method of a value).</summary>
internal sealed class NativeCallable(string name, Func<Renderer, IReadOnlyList<object?>, IReadOnlyList<KeyValuePair<string, object?>>, object?> body)
    : IJinjaCallable
{
    public string Name { get; } = name;
    public object? Invoke(Renderer renderer, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs)
        => body(renderer, args, kwargs);
}

/// <summary>Converts System.Text.Json nodes into template values and back.</summary>
internal static class JsonValues
{
    public static object? FromJson(JsonNode? node)
    {
        switch (node)
        {
            case null: return null;
            case JsonObject obj:
            {
                var dict = new JinjaDict();
                foreach (var (k, v) in obj) dict.Set(k, FromJson(v));
                return dict;
            }
            case JsonArray arr:
            {
                var list = new JinjaList();
                foreach (var item in arr) list.Add(FromJson(item));
                return list;
            }
            case JsonValue value:
                switch (value.GetValueKind())
                {
                    case System.Text.Json.JsonValueKind.String: return value.GetValue<string>();
                    case System.Text.Json.JsonValueKind.True: return true;
                    case System.Text.Json.JsonValueKind.False: return false;
                    case System.Text.Json.JsonValueKind.Null: return null;
                    case System.Text.Json.JsonValueKind.Number:
                    {
                        // Python's json.loads: a number written without '.', 'e' or 'E' is an int, anything else a float.
                        var text = value.ToJsonString();
                        if (text.IndexOfAny(['.', 'e', 'E']) < 0 && long.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var l))
                            return l;
                        return double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
                    }
                }
                break;
        }
        throw new ArgumentException($"unsupported JSON node {node.GetType().Name}");
    }
}
