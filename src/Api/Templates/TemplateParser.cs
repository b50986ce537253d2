using System.Globalization;

namespace SlothSharp.Templates;

/// <summary>
/// Recursive-descent parser for the Jinja subset chat templates use. Expression precedence follows Jinja's parser:
/// conditional &lt; or &lt; and &lt; not &lt; comparisons/in &lt; + - &lt; ~ &lt; * / // % &lt; ** &lt; unary -
/// &lt; postfix (.attr, [item], call) and filters/tests, which bind tightest (<c>not x is defined</c> is
/// <c>not (x is defined)</c>, <c>a ~ b | upper</c> filters b only).
/// </summary>
internal sealed class TemplateParser
{
    private readonly List<Token> _tokens;
    private readonly string _name;
    private int _i;
    private int _loopDepth;

    private TemplateParser(List<Token> tokens, string name)
    {
        _tokens = tokens;
        _name = name;
    }

    public static IReadOnlyList<Node> Parse(string source, string name)
    {
        var parser = new TemplateParser(TemplateLexer.Tokenize(source, name), name);
        var (body, end) = parser.ParseBody([], null);
        if (end is not null) throw parser.Error($"Encountered unknown tag '{end}'.", parser.Previous);
        return body;
    }

    private Token Current => _tokens[_i];
    private Token Previous => _tokens[Math.Max(0, _i - 1)];
    private Token Next() => _tokens[_i++];

    private TemplateSyntaxException Error(string message, Token at) => new(message, _name, at.Line, at.Column);

    private bool IsOp(string op) => Current.Kind == TokenKind.Operator && Current.Value == op;
    private bool IsName(string name) => Current.Kind == TokenKind.Name && Current.Value == name;

    private bool SkipOp(string op)
    {
        if (!IsOp(op)) return false;
        _i++;
        return true;
    }

    private bool SkipName(string name)
    {
        if (!IsName(name)) return false;
        _i++;
        return true;
    }

    private void ExpectOp(string op)
    {
        if (!SkipOp(op)) throw Error($"expected '{op}', got {Current}", Current);
    }

    private string ExpectName()
    {
        if (Current.Kind != TokenKind.Name) throw Error($"expected a name, got {Current}", Current);
        return Next().Value;
    }

    private void ExpectBlockEnd()
    {
        if (Current.Kind != TokenKind.BlockEnd) throw Error($"expected end of statement block ('%}}'), got {Current}", Current);
        _i++;
    }

    /// <summary>Parses nodes until a block tag named in <paramref name="endTags"/>; returns the nodes and that tag
    /// (null at the end of the template), leaving the stream just after the tag's name.</summary>
    private (List<Node> Body, string? EndTag) ParseBody(string[] endTags, string? openTag)
    {
        var body = new List<Node>();
        while (true)
        {
            var tok = Current;
            switch (tok.Kind)
            {
                case TokenKind.End:
                    if (endTags.Length > 0)
                        throw Error($"Unexpected end of template. Jinja was looking for the following tags: {Quote(endTags)}. "
                            + $"The innermost block that needs to be closed is '{openTag}'.", tok);
                    return (body, null);
                case TokenKind.Text:
                    _i++;
                    body.Add(new TextNode(tok.Line, tok.Value));
                    break;
                case TokenKind.VariableBegin:
                {
                    _i++;
                    if (Current.Kind == TokenKind.VariableEnd) throw Error("Expected an expression, got end of print statement", Current);
                    var expr = ParseTuple(allowCond: true);
                    if (Current.Kind != TokenKind.VariableEnd) throw Error($"expected end of print statement ('}}}}'), got {Current}", Current);
                    _i++;
                    body.Add(new OutputNode(tok.Line, expr));
                    break;
                }
                case TokenKind.BlockBegin:
                {
                    _i++;
                    var tagTok = Current;
                    if (tagTok.Kind != TokenKind.Name) throw Error($"expected a tag name, got {tagTok}", tagTok);
                    if (endTags.Contains(tagTok.Value))
                    {
                        _i++;
                        return (body, tagTok.Value);
                    }
                    body.Add(ParseStatement(endTags, openTag));
                    break;
                }
                default:
                    throw Error($"unexpected {tok}", tok);
            }
        }
    }

    private static string Quote(IEnumerable<string> tags) => string.Join(" or ", tags.Select(t => $"'{t}'"));

    private Node ParseStatement(string[] enclosingEnds, string? enclosingTag)
    {
        var tagTok = Next();
        var line = tagTok.Line;
        switch (tagTok.Value)
        {
            case "if": return ParseIf(line);
            case "for": return ParseFor(line);
            case "set": return ParseSet(line);
            case "macro": return ParseMacro(line);
            case "call": return ParseCallBlock(line);
            case "filter":
            {
                var filters = ParseFilterChain(requireFirst: true);
                ExpectBlockEnd();
                var (body, _) = ParseBody(["endfilter"], "filter");
                ExpectBlockEnd();
                return new FilterBlockNode(line, filters, body);
            }
            case "generation":
            {
                ExpectBlockEnd();
                var (body, _) = ParseBody(["endgeneration"], "generation");
                ExpectBlockEnd();
                return new GenerationNode(line, body);
            }
            case "break" or "continue":
                if (_loopDepth == 0) throw Error($"'{tagTok.Value}' outside of a loop", tagTok);
                ExpectBlockEnd();
                return tagTok.Value == "break" ? new BreakNode(line) : new ContinueNode(line);
            default:
                var message = $"Encountered unknown tag '{tagTok.Value}'.";
                if (enclosingEnds.Length > 0)
                    message += $" Jinja was looking for the following tags: {Quote(enclosingEnds)}. The innermost block that needs to be closed is '{enclosingTag}'.";
                throw Error(message, tagTok);
        }
    }

    private Node ParseIf(int line)
    {
        var branches = new List<(Expr, IReadOnlyList<Node>)>();
        IReadOnlyList<Node>? elseBody = null;
        var cond = ParseTuple(allowCond: false);
        ExpectBlockEnd();
        while (true)
        {
            var (body, end) = ParseBody(["elif", "else", "endif"], "if");
            branches.Add((cond, body));
            if (end == "elif")
            {
                cond = ParseTuple(allowCond: false);
                ExpectBlockEnd();
                continue;
            }
            if (end == "else")
            {
                ExpectBlockEnd();
                (elseBody, _) = ParseBody(["endif"], "if");
            }
            ExpectBlockEnd();
            return new IfNode(line, branches, elseBody);
        }
    }

    private (List<string> Names, bool IsTuple) ParseTargets()
    {
        var names = new List<string> { ExpectName() };
        var isTuple = false;
        while (SkipOp(","))
        {
            isTuple = true;
            if (Current.Kind != TokenKind.Name) break;
            names.Add(ExpectName());
        }
        return (names, isTuple);
    }

    private Node ParseFor(int line)
    {
        bool paren = SkipOp("(");
        var (targets, isTuple) = ParseTargets();
        if (paren) { ExpectOp(")"); isTuple = true; }
        if (!SkipName("in")) throw Error($"expected 'in', got {Current}", Current);
        var iterable = ParseTuple(allowCond: false);
        Expr? filter = null;
        if (SkipName("if")) filter = ParseTuple(allowCond: false);
        if (IsName("recursive")) throw Error("recursive loops are not supported", Current);
        ExpectBlockEnd();
        _loopDepth++;
        var (body, end) = ParseBody(["endfor", "else"], "for");
        _loopDepth--;
        IReadOnlyList<Node>? elseBody = null;
        if (end == "else")
        {
            ExpectBlockEnd();
            (elseBody, _) = ParseBody(["endfor"], "for");
        }
        ExpectBlockEnd();
        return new ForNode(line, targets, isTuple, iterable, filter, body, elseBody);
    }

    private Node ParseSet(int line)
    {
        var first = ExpectName();
        if (SkipOp("."))
        {
            var attr = ExpectName();
            ExpectOp("=");
            var value = ParseTuple(allowCond: true);
            ExpectBlockEnd();
            return new SetNode(line, [first], false, attr, value);
        }
        var targets = new List<string> { first };
        var isTuple = false;
        while (SkipOp(","))
        {
            isTuple = true;
            if (Current.Kind != TokenKind.Name) break;
            targets.Add(ExpectName());
        }
        if (SkipOp("="))
        {
            var value = ParseTuple(allowCond: true);
            ExpectBlockEnd();
            return new SetNode(line, targets, isTuple, null, value);
        }
        if (isTuple) throw Error($"expected '=', got {Current}", Current);
        var filters = ParseFilterChain(requireFirst: false);
        ExpectBlockEnd();
        var (body, _) = ParseBody(["endset"], "set");
        ExpectBlockEnd();
        return new SetBlockNode(line, first, filters, body);
    }

    private List<(string, Expr?)> ParseParameters()
    {
        var parameters = new List<(string, Expr?)>();
        ExpectOp("(");
        while (!IsOp(")"))
        {
            if (parameters.Count > 0) ExpectOp(",");
            if (IsOp(")")) break;
            var name = ExpectName();
            Expr? def = SkipOp("=") ? ParseExpression(allowCond: true) : null;
            parameters.Add((name, def));
        }
        ExpectOp(")");
        return parameters;
    }

    private Node ParseMacro(int line)
    {
        var name = ExpectName();
        var parameters = ParseParameters();
        ExpectBlockEnd();
        var saved = _loopDepth;
        _loopDepth = 0;
        var (body, _) = ParseBody(["endmacro"], "macro");
        _loopDepth = saved;
        ExpectBlockEnd();
        return new MacroNode(line, name, parameters, body);
    }

    private Node ParseCallBlock(int line)
    {
        var callerParams = IsOp("(") ? ParseParameters() : [];
        var callTok = Current;
        var call = ParseExpression(allowCond: false) as CallExpr
            ?? throw Error("expected a macro call after 'call'", callTok);
        ExpectBlockEnd();
        var (body, _) = ParseBody(["endcall"], "call");
        ExpectBlockEnd();
        return new CallBlockNode(line, call, callerParams, body);
    }

    private List<(string, IReadOnlyList<Expr>, IReadOnlyList<(string, Expr)>)> ParseFilterChain(bool requireFirst)
    {
        var filters = new List<(string, IReadOnlyList<Expr>, IReadOnlyList<(string, Expr)>)>();
        if (requireFirst || SkipOp("|"))
        {
            do
            {
                var name = ExpectName();
                var (args, kwargs) = IsOp("(") ? ParseCallArgs() : ([], []);
                filters.Add((name, args, kwargs));
            } while (SkipOp("|"));
        }
        return filters;
    }

    // ---- expressions ----

    /// <summary>An expression, or an implicit tuple <c>a, b</c> (as <c>{% set x = 1, 2 %}</c> allows).</summary>
    private Expr ParseTuple(bool allowCond)
    {
        var line = Current.Line;
        var first = ParseExpression(allowCond);
        if (!IsOp(",")) return first;
        var items = new List<Expr> { first };
        while (SkipOp(","))
        {
            if (Current.Kind is TokenKind.BlockEnd or TokenKind.VariableEnd) break;
            items.Add(ParseExpression(allowCond));
        }
        return new ListExpr(line, items, true);
    }

    private Expr ParseExpression(bool allowCond) => allowCond ? ParseCondExpr() : ParseOr();

    private Expr ParseCondExpr()
    {
        var expr = ParseOr();
        while (IsName("if"))
        {
            var line = Next().Line;
            var cond = ParseOr();
            Expr? otherwise = SkipName("else") ? ParseCondExpr() : null;
            expr = new CondExpr(line, cond, expr, otherwise);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (IsName("or")) { var line = Next().Line; left = new BinaryExpr(line, "or", left, ParseAnd()); }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (IsName("and")) { var line = Next().Line; left = new BinaryExpr(line, "and", left, ParseNot()); }
        return left;
    }

    private Expr ParseNot()
    {
        if (IsName("not")) { var line = Next().Line; return new UnaryExpr(line, "not", ParseNot()); }
        return ParseCompare();
    }

    private static readonly HashSet<string> CompareOps = ["==", "!=", "<", ">", "<=", ">="];

    private Expr ParseCompare()
    {
        var line = Current.Line;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && CompareOps.Contains(Current.Value)) { var op = Next().Value; rest.Add((op, ParseMath1())); }
            else if (SkipName("in")) rest.Add(("in", ParseMath1()));
            else if (IsName("not") && _tokens[_i + 1].Kind == TokenKind.Name && _tokens[_i + 1].Value == "in")
            {
                _i += 2;
                rest.Add(("notin", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(line, first, rest);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (IsOp("+") || IsOp("-")) { var t = Next(); left = new BinaryExpr(t.Line, t.Value, left, ParseConcat()); }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (IsOp("~")) { var t = Next(); left = new BinaryExpr(t.Line, "~", left, ParseMath2()); }
        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) { var t = Next(); left = new BinaryExpr(t.Line, t.Value, left, ParsePow()); }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(withFilter: true);
        while (IsOp("**")) { var t = Next(); left = new BinaryExpr(t.Line, "**", left, ParseUnary(withFilter: true)); }
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        Expr node;
        if (IsOp("-")) { var t = Next(); node = new UnaryExpr(t.Line, "-", ParseUnary(withFilter: false)); }
        else if (IsOp("+")) { var t = Next(); node = new UnaryExpr(t.Line, "+", ParseUnary(withFilter: false)); }
        else node = ParsePrimary();
        node = ParsePostfix(node);
        if (withFilter) node = ParseFilterExpr(node);
        return node;
    }

    private Expr ParsePrimary()
    {
        var tok = Current;
        switch (tok.Kind)
        {
            case TokenKind.Name:
                _i++;
                return tok.Value switch
                {
                    "true" or "True" => new ConstExpr(tok.Line, true),
                    "false" or "False" => new ConstExpr(tok.Line, false),
                    "none" or "None" => new ConstExpr(tok.Line, null),
                    _ => new NameExpr(tok.Line, tok.Value),
                };
            case TokenKind.String:
            {
                _i++;
                var text = tok.Value;
                while (Current.Kind == TokenKind.String) text += Next().Value;
                return new ConstExpr(tok.Line, text);
            }
            case TokenKind.Integer:
                _i++;
                if (!long.TryParse(tok.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var l))
                    throw Error($"integer literal {tok.Value} is too large", tok);
                return new ConstExpr(tok.Line, l);
            case TokenKind.Float:
                _i++;
                return new ConstExpr(tok.Line, double.Parse(tok.Value, NumberStyles.Float, CultureInfo.InvariantCulture));
            case TokenKind.Operator when tok.Value == "(":
            {
                _i++;
                if (SkipOp(")")) return new ListExpr(tok.Line, [], true);
                var first = ParseExpression(allowCond: true);
                if (SkipOp(")")) return first;
                var items = new List<Expr> { first };
                while (SkipOp(","))
                {
                    if (IsOp(")")) break;
                    items.Add(ParseExpression(allowCond: true));
                }
                ExpectOp(")");
                return new ListExpr(tok.Line, items, true);
            }
            case TokenKind.Operator when tok.Value == "[":
            {
                _i++;
                var items = new List<Expr>();
                while (!IsOp("]"))
                {
                    if (items.Count > 0) ExpectOp(",");
                    if (IsOp("]")) break;
                    items.Add(ParseExpression(allowCond: true));
                }
                ExpectOp("]");
                return new ListExpr(tok.Line, items, false);
            }
            case TokenKind.Operator when tok.Value == "{":
            {
                _i++;
                var items = new List<(Expr, Expr)>();
                while (!IsOp("}"))
                {
                    if (items.Count > 0) ExpectOp(",");
                    if (IsOp("}")) break;
                    var key = ParseExpression(allowCond: true);
                    ExpectOp(":");
                    items.Add((key, ParseExpression(allowCond: true)));
                }
                ExpectOp("}");
                return new DictExpr(tok.Line, items);
            }
            default:
                throw Error($"unexpected {tok}", tok);
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            if (IsOp("."))
            {
                var dot = Next();
                if (Current.Kind == TokenKind.Name) node = new AttrExpr(dot.Line, node, Next().Value);
                else if (Current.Kind == TokenKind.Integer) node = new ItemExpr(dot.Line, node, new ConstExpr(dot.Line, long.Parse(Next().Value, CultureInfo.InvariantCulture)));
                else throw Error($"expected a name after '.', got {Current}", Current);
            }
            else if (IsOp("[")) node = ParseSubscript(node);
            else if (IsOp("(")) node = ParseCall(node);
            else return node;
        }
    }

    private Expr ParseSubscript(Expr target)
    {
        var line = Next().Line;
        Expr? start = null, stop = null, step = null;
        var isSlice = false;
        if (!IsOp(":")) start = ParseExpression(allowCond: true);
        if (SkipOp(":"))
        {
            isSlice = true;
            if (!IsOp("]") && !IsOp(":")) stop = ParseExpression(allowCond: true);
            if (SkipOp(":") && !IsOp("]")) step = ParseExpression(allowCond: true);
        }
        ExpectOp("]");
        if (isSlice) return new SliceExpr(line, target, start, stop, step);
        return new ItemExpr(line, target, start ?? throw Error("expected a subscript", Previous));
    }

    private (List<Expr>, List<(string, Expr)>) ParseCallArgs()
    {
        ExpectOp("(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!IsOp(")"))
        {
            if (args.Count + kwargs.Count > 0) ExpectOp(",");
            if (IsOp(")")) break;
            if (Current.Kind == TokenKind.Name && _tokens[_i + 1].Kind == TokenKind.Operator && _tokens[_i + 1].Value == "=")
            {
                var name = Next().Value;
                _i++;
                kwargs.Add((name, ParseExpression(allowCond: true)));
            }
            else
            {
                if (kwargs.Count > 0) throw Error("positional argument follows keyword argument", Current);
                args.Add(ParseExpression(allowCond: true));
            }
        }
        ExpectOp(")");
        return (args, kwargs);
    }

    private Expr ParseCall(Expr target)
    {
        var line = Current.Line;
        var (args, kwargs) = ParseCallArgs();
        return new CallExpr(line, target, args, kwargs);
    }

    private Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            if (IsOp("|"))
            {
                var line = Next().Line;
                var name = ExpectName();
                while (SkipOp(".")) name += "." + ExpectName();
                var (args, kwargs) = IsOp("(") ? ParseCallArgs() : ([], []);
                node = new FilterExpr(line, node, name, args, kwargs);
            }
            else if (IsName("is"))
            {
                var line = Next().Line;
                var negated = SkipName("not");
                var name = ExpectName();
                while (SkipOp(".")) name += "." + ExpectName();
                var args = new List<Expr>();
                if (IsOp("("))
                {
                    var (a, _) = ParseCallArgs();
                    args.AddRange(a);
                }
                else if (Current.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                         || (Current.Kind == TokenKind.Name && Current.Value is not ("else" or "or" or "and" or "if" or "in" or "not" or "is"))
                         || IsOp("[") || IsOp("{"))
                {
                    args.Add(ParsePostfix(ParsePrimary()));
                }
                node = new TestExpr(line, node, name, args, negated);
            }
            else if (IsOp("(")) node = ParseCall(node);
            else return node;
        }
    }
}
