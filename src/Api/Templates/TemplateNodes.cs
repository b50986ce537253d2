namespace SlothSharp.Templates;

// The parsed template: immutable nodes, so one parsed template renders concurrently on many threads.
// Every node keeps its source line for error messages.

internal abstract record Node(int Line);

internal sealed record TextNode(int Line, string Text) : Node(Line);
internal sealed record OutputNode(int Line, Expr Value) : Node(Line);
internal sealed record IfNode(int Line, IReadOnlyList<(Expr Condition, IReadOnlyList<Node> Body)> Branches, IReadOnlyList<Node>? Else) : Node(Line);
internal sealed record ForNode(int Line, IReadOnlyList<string> Targets, bool TupleTarget, Expr Iterable, Expr? Filter,
    IReadOnlyList<Node> Body, IReadOnlyList<Node>? Else) : Node(Line);
/// <summary><c>{% set a = x %}</c>, <c>{% set a, b = x %}</c> or <c>{% set ns.attr = x %}</c> (Attribute set).</summary>
internal sealed record SetNode(int Line, IReadOnlyList<string> Targets, bool TupleTarget, string? Attribute, Expr Value) : Node(Line);
internal sealed record SetBlockNode(int Line, string Target, IReadOnlyList<(string Name, IReadOnlyList<Expr> Args, IReadOnlyList<(string, Expr)> Kwargs)> Filters,
    IReadOnlyList<Node> Body) : Node(Line);
internal sealed record MacroNode(int Line, string Name, IReadOnlyList<(string Name, Expr? Default)> Parameters, IReadOnlyList<Node> Body) : Node(Line);
internal sealed record CallBlockNode(int Line, CallExpr Call, IReadOnlyList<(string Name, Expr? Default)> CallerParameters, IReadOnlyList<Node> Body) : Node(Line);
internal sealed record FilterBlockNode(int Line, IReadOnlyList<(string Name, IReadOnlyList<Expr> Args, IReadOnlyList<(string, Expr)> Kwargs)> Filters,
    IReadOnlyList<Node> Body) : Node(Line);
internal sealed record BreakNode(int Line) : Node(Line);
internal sealed record ContinueNode(int Line) : Node(Line);
/// <summary>transformers' <c>{% generation %}</c>: the body renders normally and its output span is recorded.</summary>
internal sealed record GenerationNode(int Line, IReadOnlyList<Node> Body) : Node(Line);

internal abstract record Expr(int Line);

internal sealed record ConstExpr(int Line, object? Value) : Expr(Line);
internal sealed record NameExpr(int Line, string Name) : Expr(Line);
internal sealed record ListExpr(int Line, IReadOnlyList<Expr> Items, bool IsTuple) : Expr(Line);
internal sealed record DictExpr(int Line, IReadOnlyList<(Expr Key, Expr Value)> Items) : Expr(Line);
internal sealed record AttrExpr(int Line, Expr Target, string Attribute) : Expr(Line);
internal sealed record ItemExpr(int Line, Expr Target, Expr Key) : Expr(Line);
internal sealed record SliceExpr(int Line, Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr(Line);
internal sealed record CallExpr(int Line, Expr Target, IReadOnlyList<Expr> Args, IReadOnlyList<(string Name, Expr Value)> Kwargs) : Expr(Line);
internal sealed record FilterExpr(int Line, Expr Value, string Name, IReadOnlyList<Expr> Args, IReadOnlyList<(string Name, Expr Value)> Kwargs) : Expr(Line);
internal sealed record TestExpr(int Line, Expr Value, string Name, IReadOnlyList<Expr> Args, bool Negated) : Expr(Line);
internal sealed record UnaryExpr(int Line, string Op, Expr Operand) : Expr(Line);
internal sealed record BinaryExpr(int Line, string Op, Expr Left, Expr Right) : Expr(Line);
internal sealed record CompareExpr(int Line, Expr First, IReadOnlyList<(string Op, Expr Operand)> Rest) : Expr(Line);
internal sealed record CondExpr(int Line, Expr Condition, Expr Then, Expr? Else) : Expr(Line);
