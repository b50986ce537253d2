using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Templates;

namespace SlothSharp.Tests.Templates;

/// <summary>Every (template x conversation x add_generation_prompt) case of goldens.json: real chat templates
/// (Llama 2/3/3.1/3.2, Qwen 2.5/3, Gemma 3, DeepSeek V3, Mistral Nemo, Phi-3, Phi-4) and SlothSharp's built-ins,
/// rendered byte for byte as Python Jinja2 renders them for transformers, with the same generation spans, the same
/// raise_exception messages and the same runtime errors.</summary>
public class ChatTemplateGoldenTests
{
    private static readonly ConcurrentDictionary<string, ChatTemplate> Parsed = new();

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var c in TemplateGoldens.Document["cases"]!.AsArray())
        {
            var o = c!.AsObject();
            var name = $"{o["template"]}/{o["conversation"]}/{(o["add_generation_prompt"]!.GetValue<bool>() ? "gen" : "nogen")}";
            yield return new TestCaseData(name).SetName("Golden(" + name + ")");
        }
    }

    private static ChatTemplate Load(string templateName)
    {
        return Parsed.GetOrAdd(templateName, n =>
        {
            var info = TemplateGoldens.Document["templates"]![n]!.AsObject();
            var tokens = info["tokens"]!.AsObject();
            var special = new ChatSpecialTokens(
                tokens["bos_token"]?.GetValue<string>(), tokens["eos_token"]?.GetValue<string>(),
                tokens["pad_token"]?.GetValue<string>(), tokens["unk_token"]?.GetValue<string>());
            if (n.StartsWith("builtin:", StringComparison.Ordinal)) return ChatTemplate.BuiltIn(n["builtin:".Length..], special);
            var file = Path.Combine(TestEnv.DataDir, "templates", Path.GetFileName(info["path"]!.GetValue<string>()));
            return ChatTemplate.FromFile(file, special);
        });
    }

    [TestCaseSource(nameof(Cases))]
    public void Golden(string id)
    {
        var parts = id.Split('/');
        var expected = TemplateGoldens.Document["cases"]!.AsArray().Select(c => c!.AsObject()).Single(c =>
            c["template"]!.GetValue<string>() == parts[0] && c["conversation"]!.GetValue<string>() == parts[1]
            && c["add_generation_prompt"]!.GetValue<bool>() == (parts[2] == "gen"));
        var conversation = TemplateGoldens.Document["conversations"]![parts[1]]!.AsObject();
        var variables = conversation["variables"]?.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value);
        var template = Load(parts[0]);
        var options = new ChatRenderOptions
        {
            AddGenerationPrompt = parts[2] == "gen",
            Tools = conversation["tools"]?.AsArray(),
            Variables = variables,
            Clock = TemplateGoldens.FixedClock,
        };
        TemplateGoldens.AssertMatches(() => template.Render(conversation["messages"]!.AsArray(), options), expected, id);
    }

    [Test]
    public void BuiltInSourcesAreTheOnesTheGoldensWereMadeFrom()
    {
        foreach (var name in ChatTemplate.BuiltInNames)
        {
            var file = Path.Combine(TestEnv.DataDir, "..", "..", "..", "..", "..", "src", "Api", "Templates", "BuiltIn", name + ".jinja");
            if (!File.Exists(file)) Assert.Ignore("source tree not next to the test assembly");
            Assert.That(ChatTemplate.BuiltIn(name).Source, Is.EqualTo(File.ReadAllText(file)), name);
        }
    }

    [Test]
    public void TheSecondOracleAgreesWhereverBothRender()
    {
        // @huggingface/jinja differs from Python only where Python raises (it concatenates a list into a string,
        // or fails on None content where Python prints "None"); every text both produced is identical.
        var cases = TemplateGoldens.Document["cases"]!.AsArray().Select(c => c!.AsObject()).ToList();
        Assert.That(cases.All(c => c["hf_jinja"] is not null), "goldens made without --hf-jinja");
        var disagreeing = cases.Where(c => c["text"] is not null && c["hf_jinja"]!.GetValue<string>() == "differs")
            .Select(c => $"{c["template"]}/{c["conversation"]}").ToList();
        Assert.That(disagreeing, Is.Empty);
        Assert.That(cases.Count(c => c["hf_jinja"]!.GetValue<string>() == "agree"), Is.GreaterThan(cases.Count * 3 / 4));
    }

    [Test]
    public void RendersConcurrentlyFromOneParsedTemplate()
    {
        var template = Load("qwen3");
        var conversation = TemplateGoldens.Document["conversations"]!["tools_parallel"]!.AsObject();
        var options = new ChatRenderOptions { Tools = conversation["tools"]!.AsArray(), AddGenerationPrompt = true };
        var messages = conversation["messages"]!.AsArray();
        var reference = template.Render(messages, options).Text;
        var results = new ConcurrentBag<string>();
        Parallel.For(0, 64, _ => results.Add(template.Render(messages, options).Text));
        Assert.That(results.Distinct().ToList(), Is.EqualTo(new[] { reference }));
    }
}
