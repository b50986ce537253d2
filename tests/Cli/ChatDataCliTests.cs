using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Chat;
using SlothSharp.Cli;
using SlothSharp.Data;
using SlothSharp.Generation;
using SlothSharp.Models;
using SlothSharp.Peft;
using SlothSharp.Templates;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>`sloth finetune` and `sloth preview` on chat datasets: the shipped example conversations
/// (src/Cli/Assets/chat-example.jsonl) with the built-in ChatML template and the tiny Llama's tokenizer.</summary>
public class ChatDataCliTests() : TempDirFixture("chatcli")
{
    private static string ChatFile => Path.Combine(AppContext.BaseDirectory, "Assets", "chat-example.jsonl");
    private static string ModelDir => LlamaGolden.DenseDir;

    private static List<JsonArray> Conversations() =>
        File.ReadAllLines(ChatFile).Select(l => JsonNode.Parse(l)!["messages"]!.AsArray()).ToList();

    /// <summary>ChatML written out by hand (not by the template engine): "&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n" per message.</summary>
    private static string ChatMl(JsonArray messages) =>
        string.Concat(messages.Select(m => $"<|im_start|>{m!["role"]}\n{m["content"]}<|im_end|>\n"));

    [Test]
    public void PreviewJsonlShowsTheRenderAndTrainsOnlyTheReplies()
    {
        var r = CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile, "--chat-template", "chatml", "--jsonl");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var conversations = Conversations();
        Assert.That(lines, Has.Length.EqualTo(conversations.Count), "one line per row");
        for (var i = 0; i < lines.Length; i++)
        {
            var line = JsonNode.Parse(lines[i])!.AsObject();
            Assert.That(line.Select(kv => kv.Key), Is.EqualTo(new[] { "text", "trained" }), $"row {i}: keys");
            Assert.That(line["text"]!.GetValue<string>(), Is.EqualTo(ChatMl(conversations[i])), $"row {i}: text");
            var replies = conversations[i].Where(m => m!["role"]!.GetValue<string>() == "assistant")
                .Select(m => m!["content"]!.GetValue<string>() + "<|im_end|>" + EndOfTurnTail).ToArray();
            Assert.That(line["trained"]!.AsArray().Select(t => t!.GetValue<string>()), Is.EqualTo(replies), $"row {i}: trained parts");
        }
    }

    /// <summary>What the trained part holds after ChatML's end-of-turn token: the ExampleTokenizer's prefix rule (as
    /// TRL's) trains up to the end of the render of messages[..i+1], which ends with the newline after &lt;|im_end|&gt;.</summary>
    private const string EndOfTurnTail = "\n";

    [Test]
    public void PreviewLastAssistantAndAllModes()
    {
        var last = CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile, "--chat-template", "chatml", "--jsonl", "--train-on", "last-assistant", "--limit", "6");
        Assert.That(last.Code, Is.EqualTo(0), last.Err);
        var lines = last.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(6), "--limit");
        var sixth = JsonNode.Parse(lines[5])!["trained"]!.AsArray();  // a two-exchange conversation: only the last reply
        Assert.That(sixth.Select(t => t!.GetValue<string>()), Is.EqualTo(new[] { "A sloth can sleep hanging upside down from a branch.<|im_end|>" + EndOfTurnTail }));

        var all = CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile, "--chat-template", "chatml", "--jsonl", "--train-on", "all", "--limit", "1");
        Assert.That(all.Code, Is.EqualTo(0), all.Err);
        var row = JsonNode.Parse(all.Out)!;
        var text = row["text"]!.GetValue<string>();
        // Everything after the BOS the tokenizer adds in front of the render (token 0 predicts nothing).
        Assert.That(row["trained"]!.AsArray().Select(t => t!.GetValue<string>()), Is.EqualTo(new[] { text }));
    }

    [Test]
    public void PreviewGenerationPromptAndTerminalOutput()
    {
        var r = CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile, "--chat-template", "chatml", "--limit", "2", "--add-generation-prompt");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("<|im_start|>assistant\nA slow-moving mammal"));
        Assert.That(r.Out, Does.Contain("<|im_end|>\n<|im_start|>assistant\n"), "generation prompt appended");
        Assert.That(r.Out, Does.Contain("2 row(s)"));

        var jsonl = CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile, "--chat-template", "chatml", "--limit", "1", "--add-generation-prompt", "--jsonl");
        Assert.That(JsonNode.Parse(jsonl.Out)!["text"]!.GetValue<string>(), Does.EndWith("<|im_end|>\n<|im_start|>assistant\n"));
    }

    [Test]
    public void PreviewOfPlainTextTrainsTheDocumentAndEos()
    {
        var file = Path.Combine(Dir, "docs.txt");
        File.WriteAllLines(file, ["the sloth hangs", "from a branch"]);
        var r = CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", file, "--jsonl");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var first = JsonNode.Parse(r.Out.Split('\n')[0])!;
        Assert.That(first["text"]!.GetValue<string>(), Is.EqualTo("<|begin_of_text|>the sloth hangs<|end_of_text|>"));
        Assert.That(first["trained"]!.AsArray().Select(t => t!.GetValue<string>()), Is.EqualTo(new[] { "the sloth hangs<|end_of_text|>" }));
    }

    [Test]
    public void TemplateRejectionNamesTheRowAndTheTemplateMessage()
    {
        var template = Path.Combine(Dir, "nosystem.jinja");
        File.WriteAllText(template, "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
                                    + "[{{ m.role }}] {{ m.content }}\n{% endfor %}");
        var data = Path.Combine(Dir, "chat.jsonl");
        File.WriteAllLines(data, File.ReadAllLines(ChatFile).Take(2));  // line 2 has a system prompt
        var r = CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", data, "--chat-template", template, "--jsonl");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput), r.Err);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), "the row before the bad one is shown");
        var err = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(err, Has.Length.EqualTo(1), r.Err);
        Assert.That(err[0], Does.StartWith($"error: {data}: line 2: ").And.Contain("System role not supported").And.Not.Contain("Exception"));

        var f = CliErrorTests.Sloth("finetune", "--model", ModelDir, "--data", data, "--chat-template", template, "--out", Path.Combine(Dir, "o"), "--device", "cpu", "--steps", "1");
        CliErrorTests.AssertBadInput(f, data, "System role not supported");
        Assert.That(f.Err, Does.Contain("line 2"));
    }

    [Test]
    public void BadInputsAreOneLineErrors()
    {
        // A conversation dataset and a model without a chat template.
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile), "--chat-template", "has no chat template");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("finetune", "--model", ModelDir, "--data", ChatFile, "--out", Path.Combine(Dir, "o"), "--device", "cpu"),
                                     "--chat-template", "built-in (chatml");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile, "--chat-template", "nonesuch"), "--chat-template", "'nonesuch'");

        // A bad row: the file, the line and the field.
        var bad = Path.Combine(Dir, "bad.jsonl");
        File.WriteAllLines(bad, [.. File.ReadAllLines(ChatFile).Take(2), "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"robot\", \"content\": \"beep\"}]}"]);
        foreach (var command in new[] { "preview", "finetune" })
        {
            var r = CliErrorTests.Sloth(command, "--model", ModelDir, "--data", bad, "--chat-template", "chatml", "--out", Path.Combine(Dir, "o"));
            if (command == "preview") r = CliErrorTests.Sloth(command, "--model", ModelDir, "--data", bad, "--chat-template", "chatml");
            CliErrorTests.AssertBadInput(r, bad, "line 3: field \"messages[1].role\": unknown role \"robot\"");
        }

        // Formats that do not fit the file.
        var txt = Path.Combine(Dir, "docs.txt");
        File.WriteAllLines(txt, ["one document"]);
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", txt, "--format", "messages"), "--format", "plain-text");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", txt, "--train-on", "assistant"), "--train-on", "plain text");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile, "--format", "alpaca", "--chat-template", "chatml"), ChatFile, "line 1: field \"instruction\": missing");
        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("preview", "--model", ModelDir, "--data", ChatFile, "--format", "xml"), "--format", "xml");
    }

    [Test]
    public void FinetuneTwoStepsOnTheChatExample()
    {
        var outDir = Path.Combine(Dir, "out");
        var r = CliErrorTests.Sloth("finetune", "--model", ModelDir, "--data", ChatFile, "--chat-template", "chatml", "--out", outDir,
                                    "--device", "cpu", "--steps", "2", "--batch", "2", "--seq", "128", "--rank", "4");
        Assert.That(r.Code, Is.EqualTo(0), r.Err + r.Out);
        foreach (var f in new[] { "adapter_config.json", "adapter_model.safetensors", "losses.csv", "summary.md" })
            Assert.That(File.Exists(Path.Combine(outDir, f)), Is.True, f);
        var losses = File.ReadAllLines(Path.Combine(outDir, "losses.csv"));
        Assert.That(losses, Has.Length.EqualTo(3), "header + 2 steps");
        Assert.That(File.ReadAllText(Path.Combine(outDir, "summary.md")), Does.Contain("20 conversations").And.Contain("chatml"));
    }

    [Test]
    public void FinetuneWithEvalDataWritesTheEvalLossOfTheAdapter()
    {
        var evalFile = Path.Combine(Dir, "eval.jsonl");
        File.WriteAllLines(evalFile, File.ReadAllLines(ChatFile).Skip(15));
        var outDir = Path.Combine(Dir, "out");
        var r = CliErrorTests.Sloth("finetune", "--model", ModelDir, "--data", ChatFile, "--chat-template", "chatml", "--out", outDir,
                                    "--device", "cpu", "--steps", "3", "--batch", "2", "--seq", "128", "--rank", "4", "--lr", "1e-2",
                                    "--eval-data", evalFile, "--eval-every", "2");
        Assert.That(r.Code, Is.EqualTo(0), r.Err + r.Out);
        var csv = File.ReadAllLines(Path.Combine(outDir, "losses.csv"));
        Assert.That(csv[0], Is.EqualTo("step,loss,learning_rate,eval_loss"));
        var eval = csv.Skip(1).Select(l => l.Split(',')[3]).ToArray();
        Assert.That(eval[0], Is.Empty, "step 1 not evaluated");
        Assert.That(eval[1], Is.Not.Empty, "step 2");
        Assert.That(eval[2], Is.Not.Empty, "the last step");
        var last = double.Parse(eval[2], System.Globalization.CultureInfo.InvariantCulture);

        // The same loss recomputed independently from the saved adapter: logits, log-softmax, trained targets only.
        using var scope = NewDisposeScope();
        using var model = CausalLM.FromPretrained(ModelDir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 });
        PeftAdapter.Load(model, outDir);
        model.eval();
        var template = ChatTemplate.BuiltIn("chatml");
        var tokenizer = HfTokenizer.FromDirectory(ModelDir);
        var data = TrainingData.FromExamples(DatasetExamples.Load(evalFile), tokenizer,
            (m, t, g) => template.Render(m, new ChatRenderOptions { AddGenerationPrompt = g, Tools = t }).Text, new TrainingDataOptions { SequenceLength = 128 });
        double sum = 0;
        long count = 0;
        using (no_grad())
        {
            for (var i = 0; i < data.Rows.Count; i++)
            {
                using var batch = data.CollateBatch([i], CPU);
                var logp = nn.functional.log_softmax(model.Logits(model.Forward(batch.InputIds)).to(ScalarType.Float64), -1);
                var labels = batch.Labels[0].data<long>().ToArray();
                for (var t = 1; t < labels.Length; t++)
                {
                    if (labels[t] == -100) continue;
                    sum -= logp[0, t - 1, labels[t]].item<double>();
                    count++;
                }
            }
        }
        Assert.That(count, Is.EqualTo(data.RowTargets.Sum()));
        Assert.That(last, Is.EqualTo(sum / count).Within(1e-4), "eval loss after the last step = loss of the saved adapter on the eval data");
        Assert.That(File.ReadAllText(Path.Combine(outDir, "summary.md")), Does.Contain("eval loss"));

        CliErrorTests.AssertBadInput(CliErrorTests.Sloth("finetune", "--model", ModelDir, "--data", ChatFile, "--out", outDir, "--eval-every", "2"),
                                     "--eval-every", "--eval-data");
    }

    [Test]
    public void ChatRepliesAreGreedyGenerationsOnTheRenderedHistory()
    {
        using var output = new StringWriter();
        var options = new GenerationOptions(MaxNewTokens: 6);
        Assert.That(ChatCommand.Run(ModelDir, null, "chatml", "Be brief.", options, CPU, ScalarType.Float32, new StringReader("Hi\nHow are you?\n\nignored\n"), output), Is.EqualTo(0));
        var lines = output.ToString().Split('\n');

        // The reference: ChatML written by hand, greedy tokens from the library's generator, cut at the end of turn.
        using var model = CausalLM.FromPretrained(ModelDir, new LoadOptions { Device = CPU, ComputeDtype = ScalarType.Float32 });
        var tokenizer = HfTokenizer.FromDirectory(ModelDir);
        string Reply(string prompt)
        {
            var stops = TextGenerator.DefaultStopTokenIds(model).Append(tokenizer.EosTokenId!.Value).ToHashSet();
            var ids = TextGenerator.Generate(model, tokenizer.Encode(prompt, addBos: true), options).TakeWhile(id => !stops.Contains(id));
            var text = tokenizer.Decode(ids.ToList(), skipSpecialTokens: false);
            var end = text.IndexOf("<|im_end|>", StringComparison.Ordinal);
            return end < 0 ? text : text[..end];
        }
        var first = Reply("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        var second = Reply($"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n{first}<|im_end|>\n"
                           + "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n");
        Assert.That(output.ToString(), Is.EqualTo(first + "\n" + second + "\n"), "two replies, one per line; the empty line ends the chat");
        Assert.That(first, Is.Not.Empty);
        Assert.That(ChatStops.EndOfTurnText(ChatTemplate.BuiltIn("chatml")), Is.EqualTo("<|im_end|>"));
        Assert.That(ChatStops.EndOfTurnText(ChatTemplate.BuiltIn("llama-3")), Is.EqualTo("<|eot_id|>"));
    }
}
