using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Templates;

namespace SlothSharp.Tests.Templates;

/// <summary>The engine feature by feature (goldens.json "snippets"): output formatting (Python str/repr of floats,
/// lists, dicts, tuples), operators, access, string methods, filters, tests, statements, whitespace control, raw
/// blocks, generation spans, strftime_now and errors, each compared with Python Jinja2's output.</summary>
public class JinjaSnippetGoldenTests
{
    public static IEnumerable<TestCaseData> Snippets() =>
        TemplateGoldens.Document["snippets"]!.AsArray().Select((s, i) =>
            new TestCaseData(i).SetName($"Snippet({i:00}: {Shorten(s!["source"]!.GetValue<string>())})"));

    private static string Shorten(string s)
    {
        var flat = s.Replace("\n", "\\n").Replace("(", "[").Replace(")", "]").Replace("\"", "'");
        return flat.Length > 60 ? flat[..60] : flat;
    }

    [TestCaseSource(nameof(Snippets))]
    public void Snippet(int index)
    {
        var expected = TemplateGoldens.Document["snippets"]![index]!.AsObject();
        var source = expected["source"]!.GetValue<string>();
        var variables = TemplateGoldens.Document["snippet_variables"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value);
        var template = JinjaTemplate.Parse(source);
        TemplateGoldens.AssertMatches(() => template.Render(variables, TemplateGoldens.FixedClock), expected, source);
    }
}
