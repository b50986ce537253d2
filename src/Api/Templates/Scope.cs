namespace SlothSharp.Templates;

/// <summary>A variable frame. Loops, macro calls, call/generation bodies open one; <c>if</c> does not, so a
/// <c>{% set %}</c> inside an <c>if</c> is visible after it while one inside a <c>for</c> is not (Jinja's scoping,
/// hence <c>namespace()</c>).</summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);

    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s is not null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}
