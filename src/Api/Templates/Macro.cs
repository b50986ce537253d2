namespace SlothSharp.Templates;

/// <summary>A <c>{% macro %}</c> (or the <c>caller</c> of a call block): parameters with defaults evaluated at call
/// time, extra positional arguments in <c>varargs</c>, unknown keyword arguments in <c>kwargs</c>. It closes over the
/// scope it was defined in and returns its rendered output as a string.</summary>
internal sealed class Macro(string name, IReadOnlyList<(string Name, Expr? Default)> parameters, IReadOnlyList<Node> body, Scope closure, object? caller)
    : IJinjaCallable
{
    public string Name { get; } = name;

    public object? Invoke(Renderer renderer, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs)
    {
        var scope = new Scope(closure);
        var extraKwargs = new JinjaDict();
        var given = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in kwargs)
        {
            if (parameters.Any(p => p.Name == k)) given[k] = v;
            else if (k == "caller") scope.Set("caller", v);
            else extraKwargs.Set(k, v);
        }
        for (var i = 0; i < parameters.Count; i++)
        {
            var (pname, def) = parameters[i];
            if (i < args.Count)
            {
                if (given.ContainsKey(pname)) throw new JinjaError($"macro '{Name}' got multiple values for argument '{pname}'");
                scope.Set(pname, args[i]);
            }
            else if (given.TryGetValue(pname, out var v)) scope.Set(pname, v);
            else if (def is not null) scope.Set(pname, renderer.Evaluate(def, scope));
            else scope.Set(pname, new Undefined($"parameter '{pname}' was not provided"));
        }
        scope.Set("varargs", new JinjaList(args.Skip(parameters.Count), isTuple: true));
        scope.Set("kwargs", extraKwargs);
        if (caller is not null) scope.Set("caller", caller);
        return renderer.Capture(body, scope);
    }
}
