namespace SlothSharp.Templates;

/// <summary>Jinja's tests (<c>x is name</c>, <c>x is name(arg)</c>, <c>x is not name</c>).</summary>
internal static class TemplateTests
{
    public static bool Apply(string name, object? value, IReadOnlyList<object?> args)
    {
        object? Arg0() => args.Count > 0 ? args[0] : throw new JinjaError($"test '{name}' needs an argument");
        switch (name)
        {
            case "defined": return value is not Undefined;
            case "undefined": return value is Undefined;
            case "none": return value is null;
            case "string": return value is string;
            case "mapping": return value is JinjaDict;
            case "iterable": return value is string or JinjaList or JinjaDict or Undefined;
            case "sequence": return value is string or JinjaList or JinjaDict;
            case "number": return value is long or double or bool;
            case "integer": return value is long;
            case "float": return value is double;
            case "boolean": return value is bool;
            case "true": return value is true;
            case "false": return value is false;
            case "callable": return value is IJinjaCallable;
            case "equalto" or "eq" or "==": return PyOps.Equal(value, Arg0());
            case "ne" or "!=": return !PyOps.Equal(value, Arg0());
            case "lt" or "lessthan" or "<": return PyOps.Compare(value, Arg0(), "<") < 0;
            case "le" or "<=": return PyOps.Compare(value, Arg0(), "<=") <= 0;
            case "gt" or "greaterthan" or ">": return PyOps.Compare(value, Arg0(), ">") > 0;
            case "ge" or ">=": return PyOps.Compare(value, Arg0(), ">=") >= 0;
            case "in": return PyOps.Contains(Arg0(), value);
            case "sameas":
            {
                var other = Arg0();
                return value is null || value is bool ? PyOps.Equal(value, other) && (value is null) == (other is null) && (value is bool) == (other is bool)
                    : ReferenceEquals(value, other) || (value is long && other is long && PyOps.Equal(value, other));
            }
            case "odd" or "even":
            {
                if (value is Undefined u) throw PyOps.UndefinedError(u);
                var n = value switch { long l => l, bool b => b ? 1 : 0, _ => throw new JinjaError($"test '{name}' needs an integer, got {PyOps.TypeName(value)}") };
                return (Math.Abs(n % 2) == 1) == (name == "odd");
            }
            case "divisibleby":
            {
                var n = value is long l ? l : throw new JinjaError("divisibleby needs an integer");
                return Arg0() is long d && d != 0 ? n % d == 0 : throw new JinjaError("divisibleby needs a non-zero integer");
            }
            case "lower": return value is string ls && ls == ls.ToLowerInvariant();
            case "upper": return value is string us && us == us.ToUpperInvariant();
            default: throw new JinjaError($"No test named '{name}'.");
        }
    }
}
