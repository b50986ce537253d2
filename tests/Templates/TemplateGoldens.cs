using System.Text.Json.Nodes;
using NUnit.Framework;

namespace SlothSharp.Tests.Templates;

/// <summary>tests/data/templates/goldens.json, written by tools/templates/make_template_goldens.py with Python
/// Jinja2 in transformers' configuration (and cross-checked with @huggingface/jinja).</summary>
internal static class TemplateGoldens
{
    private static readonly Lazy<JsonObject> Root = new(() =>
        (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(TestEnv.DataDir, "templates", "goldens.json")))!);

    public static JsonObject Document => Root.Value;

    /// <summary>The instant strftime_now reads in the goldens (the generator's FIXED_NOW), as local time in UTC.</summary>
    public static readonly TimeProvider FixedClock = new FixedTimeProvider(new DateTimeOffset(2024, 7, 26, 9, 5, 3, TimeSpan.Zero));

    private sealed class FixedTimeProvider(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
    }

    /// <summary>Python's "TypeName: message" for a runtime error, without the type.</summary>
    public static string PythonReason(string message)
    {
        var colon = message.IndexOf(": ", StringComparison.Ordinal);
        return colon < 0 ? message : message[(colon + 2)..];
    }

    public static void AssertMatches(Func<SlothSharp.Templates.TemplateRenderResult> render, JsonObject expected, string what)
    {
        var error = expected["error"]?.GetValue<string>();
        if (error is null)
        {
            var result = render();
            Assert.That(result.Text, Is.EqualTo(expected["text"]!.GetValue<string>()), what);
            var spans = expected["spans"]!.AsArray().Select(s => (s![0]!.GetValue<int>(), s[1]!.GetValue<int>())).ToArray();
            Assert.That(result.GenerationSpans.Select(s => (s.Start, s.End)).ToArray(), Is.EqualTo(spans), what + ": generation spans");
        }
        else if (error == "raise_exception")
        {
            var e = Assert.Throws<SlothSharp.Templates.ChatTemplateException>(() => render(), what);
            Assert.That(e!.Message, Is.EqualTo(expected["message"]!.GetValue<string>()), what);
        }
        else
        {
            var e = Assert.Throws<SlothSharp.Templates.TemplateRuntimeException>(() => render(), what);
            Assert.That(e!.Reason, Is.EqualTo(PythonReason(expected["message"]!.GetValue<string>())), what);
        }
    }
}
