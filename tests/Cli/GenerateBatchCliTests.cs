using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Chat;
using SlothSharp.Cli;
using SlothSharp.Generation;
using SlothSharp.Models;
using SlothSharp.Templates;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>`sloth generate --prompts FILE --batch N [--out FILE]` on the tiny Llama (CPU, float32).</summary>
public class GenerateBatchCliTests() : TempDirFixture("genb")
{
    private static readonly string[] Texts = ["Make an", "It was the best of times, it was the worst", "x"];

    private string PromptsFile(params string[] lines)
    {
        var path = Path.Combine(Dir, "prompts.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    private static string[] Run(params string[] extra)
    {
        string[] args = ["generate", "--model", LlamaGolden.DenseDir, "--device", "cpu", "--dtype", "fp32", "--max-new-tokens", "9", .. extra];
        var r = CliErrorTests.Sloth(args);
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        return [r.Out, r.Err];
    }

    [Test]
    public void WritesOneLinePerPromptInInputOrderWithTheSingleGreedyContinuation()
    {
        var file = PromptsFile([.. Texts.Select(t => new JsonObject { ["prompt"] = t }.ToJsonString()), "",
                                new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi there" }) }.ToJsonString()]);
        var outPath = Path.Combine(Dir, "out.jsonl");
        var (_, err) = (Run("--prompts", file, "--batch", "2", "--out", outPath, "--chat-template", "chatml")) is var r ? (r[0], r[1]) : default;
        Assert.That(err, Does.Match(@"done: 4 prompts, \d+ new tokens in [\d.]+ s \([\d.]+ tokens/s\)\s*$"), "summary line");
        Assert.That(err, Does.Contain("4/4 prompts done"), "progress");
        var lines = File.ReadAllLines(outPath).Select(l => JsonNode.Parse(l)!.AsObject()).ToArray();
        Assert.That(lines, Has.Length.EqualTo(4));
        Assert.That(Directory.GetFiles(Dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "prompts.jsonl", "out.jsonl" }), "no temporary file left");

        var tok = HfTokenizer.FromDirectory(LlamaGolden.DenseDir);
        using var model = CausalLM.FromPretrained(LlamaGolden.DenseDir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 });
        var template = ChatTemplate.Resolve("chatml", LlamaGolden.DenseDir);
        var chatPrompt = template.Render(new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi there" }), new ChatRenderOptions { AddGenerationPrompt = true }).Text;
        // With a conversation in the file, every prompt stops at the chat stop ids as `sloth chat` does.
        var stops = ChatStops.StopIds(model, tok, ChatStops.EndOfTurnText(template));
        string[] prompts = [.. Texts, chatPrompt];
        for (var i = 0; i < prompts.Length; i++)
        {
            var ids = tok.Encode(prompts[i], addBos: true);
            var expected = TextGenerator.Generate(model, ids, new GenerationOptions(MaxNewTokens: 9, StopTokenIds: stops)).ToList();
            var stopped = expected.Count > 0 && stops.Contains(expected[^1]);
            var line = lines[i];
            Assert.That((int)line["index"]!, Is.EqualTo(i));
            Assert.That((string)line["prompt"]!, Is.EqualTo(prompts[i]));
            Assert.That((string)line["completion"]!, Is.EqualTo(tok.Decode(stopped ? expected[..^1] : expected)), $"prompt {i}");
            Assert.That((int)line["tokens"]!, Is.EqualTo(expected.Count));
            Assert.That((string)line["finish_reason"]!, Is.EqualTo(stopped ? "stop" : "length"));
        }
    }

    [Test]
    public void WithoutOutTheLinesGoToStdout()
    {
        var file = PromptsFile(Texts.Select(t => new JsonObject { ["prompt"] = t }.ToJsonString()).ToArray());
        var r = Run("--prompts", file, "--batch", "8");
        var lines = r[0].Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToArray();
        Assert.That(lines.Select(l => (string)l["prompt"]!), Is.EqualTo(Texts));
        Assert.That(lines.Select(l => (int)l["index"]!), Is.EqualTo(new[] { 0, 1, 2 }));
    }

    /// <summary>--dense-weights decodes from a dense copy of the NF4 weights: the same values, so the same lines.</summary>
    [Test]
    public void DenseWeightsGiveTheSameLines()
    {
        var file = PromptsFile(Texts.Select(t => new JsonObject { ["prompt"] = t }.ToJsonString()).ToArray());
        Assert.That(Run("--prompts", file, "--batch", "2", "--dense-weights")[0], Is.EqualTo(Run("--prompts", file, "--batch", "2")[0]));
    }

    [TestCase("{\"prompt\": 5}", "line 2: field \"prompt\": expected a string")]
    [TestCase("{\"text\": \"a\"}", "line 2: expected exactly one of the fields \"prompt\" and \"messages\"")]
    [TestCase("{\"prompt\": \"a\", \"messages\": []}", "line 2: expected exactly one of")]
    [TestCase("{\"messages\": [{\"role\": \"user\"}]}", "line 2: field \"messages\"[0].content: expected a string")]
    [TestCase("{\"messages\": \"hi\"}", "line 2: field \"messages\": expected a non-empty array")]
    [TestCase("{\"prompt\": \"a\"", "line 2: not valid JSON")]
    [TestCase("[1]", "line 2: expected a JSON object")]
    public void BadLinesNameTheFileTheLineAndTheFieldAndWriteNothing(string badLine, string message)
    {
        var file = PromptsFile("{\"prompt\": \"fine\"}", badLine);
        var outPath = Path.Combine(Dir, "out.jsonl");
        File.WriteAllText(outPath, "previous results\n");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("generate", "--model", LlamaGolden.DenseDir, "--device", "cpu", "--prompts", file, "--out", outPath),
                                     file, message);
        Assert.That(File.ReadAllText(outPath), Is.EqualTo("previous results\n"), "the old output is untouched");
    }

    [Test]
    public void OptionMistakesAreClearErrors()
    {
        var file = PromptsFile("{\"prompt\": \"a\"}");
        string[] generate = ["generate", "--model", LlamaGolden.DenseDir, "--device", "cpu"];
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth(generate), "--prompt", "either --prompt TEXT or --prompts FILE");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. generate, "--prompt", "a", "--prompts", file]), "--prompt", "either");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. generate, "--prompt", "a", "--batch", "4"]), "--batch", "only with --prompts");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. generate, "--prompts", file, "--batch", "0"]), "--batch", "must be a positive integer");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. generate, "--prompts", file, "--repetition-penalty", "0"]), "--repetition-penalty", "");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. generate, "--prompts", Path.Combine(Dir, "none.jsonl")]), Path.Combine(Dir, "none.jsonl"), "file not found");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. generate, "--prompts", file, "--out", Path.Combine(Dir, "no", "o.jsonl")]), "--out", "directory not found");
        var chat = PromptsFile("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth([.. generate, "--prompts", chat]), "--chat-template", "no chat template");
    }
}
