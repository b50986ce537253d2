using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Templates;

namespace SlothSharp.Tests.Templates;

/// <summary>Errors a template author acts on: syntax errors name the line and column, runtime errors the line,
/// raise_exception carries the template's own message.</summary>
public class JinjaTemplateErrorTests
{
    private static readonly Dictionary<string, JsonNode?> NoVariables = new();

    [TestCase("{% if x %}\nunclosed", 2, "Unexpected end of template. Jinja was looking for the following tags: 'elif' or 'else' or 'endif'.")]
    [TestCase("a\n{% for x in y %}{% endif %}", 2, "Encountered unknown tag 'endif'.")]
    [TestCase("line1\nline2\n{{ 1 + }}", 3, "unexpected '}}'")]
    [TestCase("{% frobnicate %}", 1, "Encountered unknown tag 'frobnicate'.")]
    [TestCase("{{ 'unterminated }}", 1, "unterminated string literal")]
    [TestCase("x\n\n   {% break %}", 3, "'break' outside of a loop")]
    [TestCase("{# never closed", 1, "missing end of comment tag")]
    [TestCase("{{ a b }}", 1, "expected end of print statement ('}}'), got 'b'")]
    public void SyntaxErrorNamesLineAndColumn(string source, int line, string reason)
    {
        var e = Assert.Throws<TemplateSyntaxException>(() => JinjaTemplate.Parse(source, "t.jinja"));
        Assert.That(e!.Line, Is.EqualTo(line));
        Assert.That(e.Column, Is.GreaterThan(0));
        Assert.That(e.Reason, Does.StartWith(reason));
        Assert.That(e.Message, Does.StartWith($"t.jinja, line {line}, column {e.Column}: "));
    }

    [Test]
    public void ColumnPointsAtTheOffendingToken()
    {
        var e = Assert.Throws<TemplateSyntaxException>(() => JinjaTemplate.Parse("ab\n  {{ x | }}"));
        Assert.That((e!.Line, e.Column), Is.EqualTo((2, 10)), "the '}}' where a filter name was expected");
    }

    [Test]
    public void RaiseExceptionCarriesTheTemplatesMessageAndLine()
    {
        var template = JinjaTemplate.Parse("{% for m in messages %}\n{% if m.role == 'bad' %}\n{{ raise_exception('Role ' ~ m.role ~ ' is not supported') }}\n{% endif %}\n{% endfor %}", "chat.jinja");
        var vars = new Dictionary<string, JsonNode?> { ["messages"] = JsonNode.Parse("[{\"role\": \"bad\"}]") };
        var e = Assert.Throws<ChatTemplateException>(() => template.Render(vars));
        Assert.That(e!.Message, Is.EqualTo("Role bad is not supported"));
        Assert.That(e.Line, Is.EqualTo(3));
        Assert.That(e.TemplateName, Is.EqualTo("chat.jinja"));
    }

    [TestCase("ok\n{{ m.tool_calls.first }}", 2, "'dict object' has no attribute 'tool_calls'")]
    [TestCase("{{ undefined_thing + 1 }}", 1, "'undefined_thing' is undefined")]
    [TestCase("\n\n{{ 'a' + 1 }}", 3, "can only concatenate str (not \"int\") to str")]
    [TestCase("{{ 1 | nosuchfilter }}", 1, "No filter named 'nosuchfilter'.")]
    [TestCase("{{ 1 is nosuchtest }}", 1, "No test named 'nosuchtest'.")]
    [TestCase("{{ [1].append(2) }}", 1, "access to attribute 'append' of 'list' object is unsafe.")]
    [TestCase("{{ 1 < 'a' }}", 1, "'<' not supported between instances of 'int' and 'str'")]
    [TestCase("{% set x = 1 %}{% set x.a = 2 %}", 1, "cannot assign attribute on non-namespace object")]
    [TestCase("{{ {} | tojson ~ (m | tojson) ~ (undefined_thing | tojson) }}", 1, "Object of type Undefined is not JSON serializable")]
    public void RuntimeErrorNamesTheLine(string source, int line, string reason)
    {
        var template = JinjaTemplate.Parse(source, "t.jinja");
        var vars = new Dictionary<string, JsonNode?> { ["m"] = new JsonObject { ["role"] = "user" } };
        var e = Assert.Throws<TemplateRuntimeException>(() => template.Render(vars));
        Assert.That(e!.Reason, Is.EqualTo(reason));
        Assert.That(e.Line, Is.EqualTo(line));
        Assert.That(e.Message, Is.EqualTo($"t.jinja, line {line}: {reason}"));
    }

    [Test]
    public void EndlessMacroRecursionFailsCleanly()
    {
        var template = JinjaTemplate.Parse("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}");
        var e = Assert.Throws<TemplateRuntimeException>(() => template.Render(NoVariables));
        Assert.That(e!.Reason, Does.Contain("nested deeper than"));
    }

    [Test]
    public void UndefinedIsLenientWhereJinjaIsLenient()
    {
        // Printing, truth tests, iteration, length, default and `is defined` never fail on Undefined.
        var text = JinjaTemplate.Parse("[{{ nope }}]{% if nope %}x{% endif %}{% for a in nope %}y{% endfor %}{{ nope | length }}{{ nope | default('d') }}{{ nope is defined }}{{ nope.x is defined if nope is defined else 'skip' }}")
            .Render(NoVariables).Text;
        Assert.That(text, Is.EqualTo("[]0dFalseskip"));
    }

    [Test]
    public void TemplateSetsDoNotLeakIntoTheCallersVariables()
    {
        var template = JinjaTemplate.Parse("{% set messages = messages[1:] %}{{ messages | length }}");
        var vars = new Dictionary<string, JsonNode?> { ["messages"] = JsonNode.Parse("[1, 2, 3]") };
        Assert.That(template.Render(vars).Text, Is.EqualTo("2"));
        Assert.That(template.Render(vars).Text, Is.EqualTo("2"), "a second render sees the original list");
    }

    [Test]
    public void JsonNumbersKeepPythonsIntAndFloatDistinction()
    {
        var vars = new Dictionary<string, JsonNode?> { ["v"] = JsonNode.Parse("[1, 1.0, 1e2, -0, 12345678901234567]") };
        Assert.That(JinjaTemplate.Parse("{{ v }} {{ v | tojson }}").Render(vars).Text,
            Is.EqualTo("[1, 1.0, 100.0, 0, 12345678901234567] [1, 1.0, 100.0, 0, 12345678901234567]"));
    }
}
