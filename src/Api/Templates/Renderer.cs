using System.Text;

namespace SlothSharp.Templates;

/// <summary>Renders a parsed template once: the per-render state (output buffer, generation spans, clock). A new
/// Renderer is made for every render, so parsed templates are shared freely between threads.</summary>
internal sealed class Renderer
{
    private enum Flow { Normal, Break, Continue }

    private StringBuilder _out = new();
    private readonly StringBuilder _root;
    private readonly List<GenerationSpan> _spans = [];

    public Renderer(string templateName, TimeProvider clock)
    {
        TemplateName = templateName;
        Clock = clock;
        _root = _out;
    }

    public string TemplateName { get; }
    public TimeProvider Clock { get; }

    /// <summary>Line of the statement or expression being evaluated, for error messages.</summary>
    public int CurrentLine { get; private set; }

    public TemplateRenderResult Run(IReadOnlyList<Node> body, Scope scope)
    {
        try
        {
            Execute(body, scope);
        }
        catch (JinjaError e)
        {
            throw new TemplateRuntimeException(e.Message, TemplateName, CurrentLine, e);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or OverflowException or FormatException
                                       or IndexOutOfRangeException or InvalidCastException)
        {
            // A value operation this engine does not model exactly (huge repeat counts, odd arguments): still an
            // error of the template, reported with its line, never an unexplained crash.
            throw new TemplateRuntimeException(e.Message, TemplateName, CurrentLine, e);
        }
        return new TemplateRenderResult(_root.ToString(), _spans.ToArray());
    }

    /// <summary>How deeply macros may call each other; a recursive macro fails cleanly instead of overflowing the
    /// stack.</summary>
    private const int MaxCaptureDepth = 200;

    private int _captureDepth;

    /// <summary>Renders <paramref name="body"/> into a fresh buffer and returns the text (macro calls, set blocks).</summary>
    public string Capture(IReadOnlyList<Node> body, Scope scope)
    {
        if (_captureDepth >= MaxCaptureDepth) throw new JinjaError($"macro calls nested deeper than {MaxCaptureDepth} (endless recursion?)");
        var saved = _out;
        _out = new StringBuilder();
        _captureDepth++;
        try
        {
            Execute(body, scope);
            return _out.ToString();
        }
        finally
        {
            _out = saved;
            _captureDepth--;
        }
    }

    private Flow Execute(IReadOnlyList<Node> body, Scope scope)
    {
        foreach (var node in body)
        {
            var flow = ExecuteNode(node, scope);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecuteNode(Node node, Scope scope)
    {
        CurrentLine = node.Line;
        switch (node)
        {
            case TextNode t:
                _out.Append(t.Text);
                return Flow.Normal;
            case OutputNode o:
                _out.Append(PyOps.Str(Evaluate(o.Value, scope)));
                return Flow.Normal;
            case IfNode i:
                foreach (var (cond, branch) in i.Branches)
                {
                    CurrentLine = cond.Line;
                    if (PyOps.Truthy(Evaluate(cond, scope))) return Execute(branch, scope);
                }
                return i.Else is null ? Flow.Normal : Execute(i.Else, scope);
            case ForNode f:
                ExecuteFor(f, scope);
                return Flow.Normal;
            case SetNode s:
                ExecuteSet(s, scope);
                return Flow.Normal;
            case SetBlockNode sb:
            {
                object? value = Capture(sb.Body, scope);
                foreach (var (name, args, kwargs) in sb.Filters) value = ApplyFilter(name, value, args, kwargs, scope);
                scope.Set(sb.Target, value);
                return Flow.Normal;
            }
            case MacroNode m:
                scope.Set(m.Name, new Macro(m.Name, m.Parameters, m.Body, scope, null));
                return Flow.Normal;
            case CallBlockNode c:
            {
                var caller = new Macro("caller", c.CallerParameters, c.Body, scope, null);
                var target = Evaluate(c.Call.Target, scope);
                var (args, kwargs) = EvaluateArgs(c.Call.Args, c.Call.Kwargs, scope);
                kwargs.Add(new("caller", caller));
                CurrentLine = c.Line;
                _out.Append(PyOps.Str(Call(target, args, kwargs)));
                return Flow.Normal;
            }
            case FilterBlockNode fb:
            {
                object? value = Capture(fb.Body, scope);
                foreach (var (name, args, kwargs) in fb.Filters) value = ApplyFilter(name, value, args, kwargs, scope);
                _out.Append(PyOps.Str(value));
                return Flow.Normal;
            }
            case GenerationNode g:
            {
                // transformers renders the body as a call-block caller (its own scope), then records where the text
                // landed in the output: [start, start + length).
                var text = Capture(g.Body, new Scope(scope));
                var start = _out.Length;
                _out.Append(text);
                _spans.Add(new GenerationSpan(start, text.Length));
                return Flow.Normal;
            }
            case BreakNode: return Flow.Break;
            case ContinueNode: return Flow.Continue;
            default:
                throw new JinjaError($"unsupported node {node.GetType().Name}");
        }
    }

    private void ExecuteFor(ForNode f, Scope scope)
    {
        var iterable = Evaluate(f.Iterable, scope);
        var items = PyOps.Iterate(iterable).ToList();
        var loopScope = new Scope(scope);
        if (f.Filter is not null)
        {
            // "for x in xs if cond": the filter runs before the loop, so loop.length and loop.last count kept items.
            var kept = new List<object?>();
            foreach (var item in items)
            {
                Bind(loopScope, f.Targets, f.TupleTarget, item);
                if (PyOps.Truthy(Evaluate(f.Filter, loopScope))) kept.Add(item);
            }
            items = kept;
            loopScope = new Scope(scope);
        }
        if (items.Count == 0)
        {
            if (f.Else is not null) Execute(f.Else, scope);
            return;
        }
        var loop = new LoopContext(items);
        for (var i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            Bind(loopScope, f.Targets, f.TupleTarget, items[i]);
            loopScope.Set("loop", loop);
            if (Execute(f.Body, loopScope) == Flow.Break) break;
        }
    }

    private static void Bind(Scope scope, IReadOnlyList<string> targets, bool isTuple, object? value)
    {
        if (!isTuple)
        {
            scope.Set(targets[0], value);
            return;
        }
        var parts = PyOps.Iterate(value).ToList();
        if (parts.Count > targets.Count) throw new JinjaError($"too many values to unpack (expected {targets.Count})");
        if (parts.Count < targets.Count) throw new JinjaError($"not enough values to unpack (expected {targets.Count}, got {parts.Count})");
        for (var i = 0; i < targets.Count; i++) scope.Set(targets[i], parts[i]);
    }

    private void ExecuteSet(SetNode s, Scope scope)
    {
        var value = Evaluate(s.Value, scope);
        if (s.Attribute is null)
        {
            Bind(scope, s.Targets, s.TupleTarget, value);
            return;
        }
        if (!scope.TryGet(s.Targets[0], out var target) || target is not JinjaNamespace ns)
            throw new JinjaError("cannot assign attribute on non-namespace object");
        ns.Attributes[s.Attribute] = value;
    }

    // ---- expressions ----

    public object? Evaluate(Expr expr, Scope scope)
    {
        switch (expr)
        {
            case ConstExpr c: return c.Value;
            case NameExpr n:
                return scope.TryGet(n.Name, out var v) ? v : new Undefined($"'{n.Name}' is undefined");
            case ListExpr l:
                return new JinjaList(l.Items.Select(i => Evaluate(i, scope)), l.IsTuple);
            case DictExpr d:
            {
                var dict = new JinjaDict();
                foreach (var (k, val) in d.Items) dict.Set(Evaluate(k, scope), Evaluate(val, scope));
                return dict;
            }
            case AttrExpr a:
                return ValueAccess.GetAttr(Evaluate(a.Target, scope), a.Attribute);
            case ItemExpr i:
                return ValueAccess.GetItem(Evaluate(i.Target, scope), Evaluate(i.Key, scope));
            case SliceExpr s:
                return PyOps.Slice(Evaluate(s.Target, scope),
                    s.Start is null ? null : Evaluate(s.Start, scope),
                    s.Stop is null ? null : Evaluate(s.Stop, scope),
                    s.Step is null ? null : Evaluate(s.Step, scope));
            case CallExpr call:
            {
                var target = Evaluate(call.Target, scope);
                var (args, kwargs) = EvaluateArgs(call.Args, call.Kwargs, scope);
                CurrentLine = call.Line;
                return Call(target, args, kwargs);
            }
            case FilterExpr f:
            {
                var value = Evaluate(f.Value, scope);
                CurrentLine = f.Line;
                return ApplyFilter(f.Name, value, f.Args, f.Kwargs, scope);
            }
            case TestExpr t:
            {
                var value = Evaluate(t.Value, scope);
                var args = t.Args.Select(a => Evaluate(a, scope)).ToList();
                CurrentLine = t.Line;
                var result = TemplateTests.Apply(t.Name, value, args);
                return t.Negated ? !result : result;
            }
            case UnaryExpr u:
            {
                var value = Evaluate(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !PyOps.Truthy(value),
                    "-" => PyOps.Negate(value),
                    _ => value is Undefined undefined ? throw PyOps.UndefinedError(undefined) : value,
                };
            }
            case BinaryExpr b:
                return EvaluateBinary(b, scope);
            case CompareExpr c:
            {
                var left = Evaluate(c.First, scope);
                foreach (var (op, operandExpr) in c.Rest)
                {
                    var right = Evaluate(operandExpr, scope);
                    CurrentLine = c.Line;
                    var ok = op switch
                    {
                        "==" => PyOps.Equal(left, right),
                        "!=" => !PyOps.Equal(left, right),
                        "<" => PyOps.Compare(left, right, "<") < 0,
                        "<=" => PyOps.Compare(left, right, "<=") <= 0,
                        ">" => PyOps.Compare(left, right, ">") > 0,
                        ">=" => PyOps.Compare(left, right, ">=") >= 0,
                        "in" => PyOps.Contains(right, left),
                        "notin" => !PyOps.Contains(right, left),
                        _ => throw new JinjaError($"unknown comparison {op}"),
                    };
                    if (!ok) return false;
                    left = right;
                }
                return true;
            }
            case CondExpr c:
                if (PyOps.Truthy(Evaluate(c.Condition, scope))) return Evaluate(c.Then, scope);
                return c.Else is null ? new Undefined("the inline if-expression on line " + c.Line + " evaluated to false and no else section was defined.") : Evaluate(c.Else, scope);
            default:
                throw new JinjaError($"unsupported expression {expr.GetType().Name}");
        }
    }

    private object? EvaluateBinary(BinaryExpr b, Scope scope)
    {
        var left = Evaluate(b.Left, scope);
        switch (b.Op)
        {
            case "and": return PyOps.Truthy(left) ? Evaluate(b.Right, scope) : left;
            case "or": return PyOps.Truthy(left) ? left : Evaluate(b.Right, scope);
        }
        var right = Evaluate(b.Right, scope);
        CurrentLine = b.Line;
        return b.Op switch
        {
            "~" => PyOps.Str(left) + PyOps.Str(right),
            "+" => PyOps.Add(left, right),
            _ => PyOps.Arithmetic(b.Op, left, right),
        };
    }

    private (List<object?>, List<KeyValuePair<string, object?>>) EvaluateArgs(IReadOnlyList<Expr> args, IReadOnlyList<(string Name, Expr Value)> kwargs, Scope scope)
    {
        var a = args.Select(x => Evaluate(x, scope)).ToList();
        var k = kwargs.Select(x => new KeyValuePair<string, object?>(x.Name, Evaluate(x.Value, scope))).ToList();
        return (a, k);
    }

    public object? Call(object? target, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs) => target switch
    {
        IJinjaCallable c => c.Invoke(this, args, kwargs),
        Undefined u => throw PyOps.UndefinedError(u),
        _ => throw new JinjaError($"'{PyOps.TypeName(target)}' object is not callable"),
    };

    private object? ApplyFilter(string name, object? value, IReadOnlyList<Expr> argExprs, IReadOnlyList<(string Name, Expr Value)> kwargExprs, Scope scope)
    {
        var (args, kwargs) = EvaluateArgs(argExprs, kwargExprs, scope);
        return TemplateFilters.Apply(this, name, value, args, kwargs);
    }
}
