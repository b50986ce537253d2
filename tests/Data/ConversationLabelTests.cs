using System.Text;
using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Data;
using SlothSharp.Tokenization;
using SlothSharp.Training;
using static SlothSharp.Tests.Data.DatasetTestSupport;

namespace SlothSharp.Tests.Data;

/// <summary>Labels of conversations rendered with the test template match spans computed by hand: the template's
/// pieces are tokenized one by one (special tokens separate them, so the pieces' tokens are the render's tokens) and
/// an assistant turn trains its body and its &lt;|eot_id|&gt;, nothing of the headers.</summary>
public class ConversationLabelTests
{
    private static HfTokenizer Tok => HfTokenizer.FromDirectory(TokenizerDir);

    private static JsonObject Msg(string role, string content) => new() { ["role"] = role, ["content"] = content };

    /// <summary>Expected ids and trained flags from (text, trained) pieces, each tokenized alone.</summary>
    private static (int[] Ids, bool[] Trained) Expected(HfTokenizer tok, params (string Text, bool Trained)[] pieces)
    {
        var ids = new List<int>();
        var trained = new List<bool>();
        foreach (var (text, t) in pieces)
        {
            var p = tok.Encode(text);
            ids.AddRange(p);
            trained.AddRange(Enumerable.Repeat(t, p.Length));
        }
        return (ids.ToArray(), trained.ToArray());
    }

    private static readonly JsonArray Chat = new(
        Msg("system", "Be kind."), Msg("user", "Hello there"), Msg("assistant", "Hi! How can I help?"),
        Msg("user", "Tell me about the lazy dog"), Msg("assistant", "The dog sleeps."));

    private static (string, bool)[] ChatPieces(bool lastOnly) =>
    [
        (Bos, false), (Header("system"), false), ("Be kind.", false), (Eot, false),
        (Header("user"), false), ("Hello there", false), (Eot, false),
        (Header("assistant"), false), ("Hi! How can I help?", !lastOnly), (Eot, !lastOnly),
        (Header("user"), false), ("Tell me about the lazy dog", false), (Eot, false),
        (Header("assistant"), false), ("The dog sleeps.", true), (Eot, true),
    ];

    [TestCase(TrainOn.Default, false)]
    [TestCase(TrainOn.Assistant, false)]
    [TestCase(TrainOn.LastAssistant, true)]
    public void AssistantTurnsAndTheirEndOfTurnAreTrained(TrainOn trainOn, bool lastOnly)
    {
        var tok = Tok;
        var example = TrainingExample.FromMessages(Chat);
        var result = new ExampleTokenizer(tok, Template()).Tokenize(example, trainOn);
        var (ids, trained) = Expected(tok, ChatPieces(lastOnly));
        Assert.That(result.Ids, Is.EqualTo(ids));
        Assert.That(result.Trained, Is.EqualTo(trained));
        Assert.That(result.Ids.Count(i => i == tok.BosTokenId), Is.EqualTo(1), "the template writes BOS: no second one");
    }

    [Test]
    public void TrainOnAllTrainsEverything()
    {
        var result = new ExampleTokenizer(Tok, Template()).Tokenize(TrainingExample.FromMessages(Chat), TrainOn.All);
        Assert.That(result.Trained, Is.All.True);
    }

    [Test]
    public void BosIsAddedWhenTheTemplateDoesNotWriteIt()
    {
        var tok = Tok;
        var result = new ExampleTokenizer(tok, Template(writeBos: false)).Tokenize(TrainingExample.FromMessages(Chat));
        var (ids, trained) = Expected(tok, ChatPieces(lastOnly: false));
        Assert.That(result.Ids, Is.EqualTo(ids), "BOS added in front");
        Assert.That(result.Trained, Is.EqualTo(trained));
    }

    [Test]
    public void ToolCallsAndToolsAreRenderedAndTheCallIsTrained()
    {
        var tok = Tok;
        var example = DatasetExamples.Load(File("messages.jsonl"))[1];
        var result = new ExampleTokenizer(tok, Template()).Tokenize(example);
        var m = example.Messages!;
        var (ids, trained) = Expected(tok,
            (Bos, false), (Header("system"), false), ("Tools: " + example.Tools!.ToJsonString(), false), (Eot, false),
            (Header("user"), false), ("Weather in Paris?", false), (Eot, false),
            (Header("assistant"), false), (Body((JsonObject)m[1]!), true), (Eot, true),
            (Header("tool"), false), ("{\"temp\": 21}", false), (Eot, false),
            (Header("assistant"), false), ("It is 21 degrees in Paris.", true), (Eot, true));
        Assert.That(result.Ids, Is.EqualTo(ids));
        Assert.That(result.Trained, Is.EqualTo(trained));
    }

    [Test]
    public void ConversationalPromptCompletionTrainsTheCompletion()
    {
        var tok = Tok;
        var example = DatasetExamples.Load(File("prompt_completion_chat.jsonl"))[0];
        var result = new ExampleTokenizer(tok, Template()).Tokenize(example);
        var (ids, trained) = Expected(tok, (Bos, false), (Header("system"), false), ("Be brief.", false), (Eot, false),
            (Header("user"), false), ("Capital of Spain?", false), (Eot, false), (Header("assistant"), false), ("Madrid.", true), (Eot, true));
        Assert.That(result.Ids, Is.EqualTo(ids));
        Assert.That(result.Trained, Is.EqualTo(trained));
    }

    [Test]
    public void PromptCompletionStringsTrainTheCompletionAndEos()
    {
        var tok = Tok;
        var example = TrainingExample.FromPromptCompletion("The capital of France is", " Paris.");
        var result = new ExampleTokenizer(tok, null).Tokenize(example);
        var prompt = tok.Encode("The capital of France is", addBos: true);
        Assert.That(result.Ids, Is.EqualTo(tok.Encode("The capital of France is Paris.", addBos: true).Append(tok.EosTokenId!.Value)));
        Assert.That(result.Trained.Take(prompt.Length), Is.All.False);
        Assert.That(result.Trained.Skip(prompt.Length), Is.All.True);
        Assert.That(result.Ids[^1], Is.EqualTo(tok.EosTokenId));
    }

    /// <summary>A template that shows an assistant's reasoning only on the conversation's last message (as reasoning
    /// models' templates drop earlier turns' thinking): the prefix rule fails for the first reply, which is then
    /// found by its text; the last reply, reasoning included, follows the prefix rule.</summary>
    [Test]
    public void TemplateRewritingEarlierTurnsFallsBackToTheReplyText()
    {
        var tok = Tok;
        RenderConversation template = (messages, tools, gen) =>
        {
            var sb = new StringBuilder(Bos);
            for (var i = 0; i < messages.Count; i++)
            {
                var m = (JsonObject)messages[i]!;
                sb.Append(Header(Conversation.Role(m)!));
                if (i == messages.Count - 1 && m["reasoning"] is { } r) sb.Append("<think>").Append(r.GetValue<string>()).Append("</think>");
                sb.Append(Body(m)).Append(Eot);
            }
            if (gen) sb.Append(Header("assistant"));
            return sb.ToString();
        };
        var chat = new JsonArray(Msg("user", "Hello there"), Msg("assistant", "Hi!"), Msg("user", "And the dog?"), Msg("assistant", "It sleeps."));
        chat[1]!["reasoning"] = "greet back";
        chat[3]!["reasoning"] = "look at the dog";
        var result = new ExampleTokenizer(tok, template).Tokenize(TrainingExample.FromMessages(chat));
        var (ids, trained) = Expected(tok, (Bos, false), (Header("user"), false), ("Hello there", false), (Eot, false),
            (Header("assistant"), false), ("Hi!", true), (Eot, true), (Header("user"), false), ("And the dog?", false), (Eot, false),
            (Header("assistant"), false), ("<think>look at the dog</think>It sleeps.", true), (Eot, true));
        Assert.That(result.Ids, Is.EqualTo(ids));
        Assert.That(result.Trained, Is.EqualTo(trained));
    }

    [Test]
    public void TemplateThatHidesAnEarlierReplyIsAnErrorSayingWhy()
    {
        RenderConversation template = (messages, tools, gen) =>
        {
            var sb = new StringBuilder(Bos);
            for (var i = 0; i < messages.Count; i++)
            {
                var m = (JsonObject)messages[i]!;
                var hidden = Conversation.Role(m) == "assistant" && i < messages.Count - 1;
                sb.Append(Header(Conversation.Role(m)!)).Append(hidden ? "(earlier reply)" : Body(m)).Append(Eot);
            }
            if (gen) sb.Append(Header("assistant"));
            return sb.ToString();
        };
        var example = TrainingExample.FromMessages(new JsonArray(Msg("user", "a"), Msg("assistant", "first reply"), Msg("user", "b"), Msg("assistant", "second")), source: "chat.jsonl: line 7");
        var e = Assert.Throws<InvalidDataException>(() => new ExampleTokenizer(Tok, template).Tokenize(example))!;
        Assert.That(e.Message, Does.StartWith("chat.jsonl: line 7: assistant message 1:"));
        Assert.That(e.Message, Does.Contain("rewrites earlier turns").And.Contain("does not appear in the full render"));
    }

    [Test]
    public void TrainOnAssistantForTextIsAnError()
    {
        var e = Assert.Throws<InvalidDataException>(() => new ExampleTokenizer(Tok, null).Tokenize(TrainingExample.FromText("x", "t.jsonl: line 4"), TrainOn.Assistant))!;
        Assert.That(e.Message, Does.StartWith("t.jsonl: line 4: train-on Assistant needs conversations"));
    }

    [Test]
    public void ConversationWithoutTemplateIsAnError()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new ExampleTokenizer(Tok, null).Tokenize(TrainingExample.FromMessages(Chat, source: "c.jsonl: line 1")))!;
        Assert.That(e.Message, Does.Contain("c.jsonl: line 1: a conversation needs a chat template"));
    }

    [Test]
    public void AllMaskedDatasetIsAnError()
    {
        var examples = new[] { new TokenizedExample([1, 2, 3], [false, false, false]), new TokenizedExample([4, 5], [true, false]) };
        var e = Assert.Throws<InvalidDataException>(() => TrainingData.FromTokenized(examples, 0, new TrainingDataOptions { SequenceLength = 8 }))!;
        Assert.That(e.Message, Does.Contain("no token of the 2 examples is trained").And.Contain("every label is masked"));
    }
}
