using System.Text;
using Microsoft.Extensions.AI;
using NUnit.Framework;
using SlothSharp.Chat;
using SlothSharp.Generation;
using SlothSharp.Models;
using SlothSharp.Peft;
using SlothSharp.Tokenization;
using static TorchSharp.torch;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace SlothSharp.Tests;

/// <summary>
/// <see cref="SlothChatClient"/> on the tiny Llama (tests/data/hf-tiny-llama, CPU, float32) with the built-in ChatML
/// template. The reference for every reply is computed apart from the client: ChatML written by hand, tokenized with
/// BOS, greedy (or seeded) ids from <see cref="TextGenerator.Generate(CausalLM, IReadOnlyList{int}, GenerationOptions)"/>,
/// decoded in one go and cut at the end-of-turn text.
/// </summary>
public class SlothChatClientTests
{
    private static string ModelDir => LlamaGolden.DenseDir;
    private static string AdapterDir => Path.Combine(TestEnv.TinyLlamaDir, "adapter");
    private static readonly LoadOptions Cpu32 = new() { Device = CPU, ComputeDtype = ScalarType.Float32 };

    private static readonly AIChatMessage[] Conversation =
    [
        new(ChatRole.System, "Be brief."),
        new(ChatRole.User, "Hi"),
        new(ChatRole.Assistant, "Hello!"),
        new(ChatRole.User, "How are you?"),
    ];

    private const string ConversationChatMl =
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n" +
        "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n";

    private SlothChatClient _client = null!;
    private CausalLM _reference = null!;
    private HfTokenizer _tokenizer = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _client = SlothChatClient.FromDirectory(ModelDir, chatTemplate: "chatml", loadOptions: Cpu32);
        _reference = CausalLM.FromPretrained(ModelDir, Cpu32);
        _tokenizer = HfTokenizer.FromDirectory(ModelDir);
    }

    [OneTimeTearDown]
    public void Release()
    {
        _client.Dispose();
        _reference.Dispose();
    }

    /// <summary>What the client should answer: the generated ids (up to and including a stop id), and the text.</summary>
    private sealed record Expected(int[] PromptIds, int[] Generated, string Text, bool Stopped);

    private Expected Reference(CausalLM model, string chatMl, GenerationOptions options)
    {
        var promptIds = _tokenizer.Encode(chatMl, addBos: true);
        var stops = TextGenerator.DefaultStopTokenIds(model).Append(_tokenizer.EosTokenId!.Value).ToHashSet();
        var generated = TextGenerator.Generate(model, promptIds, options with { StopTokenIds = stops.ToList() }).ToArray();
        var stoppedOnId = generated.Length > 0 && stops.Contains(generated[^1]);
        var text = _tokenizer.Decode(stoppedOnId ? generated[..^1] : generated);
        var end = text.IndexOf("<|im_end|>", StringComparison.Ordinal);
        return new Expected(promptIds, generated, end < 0 ? text : text[..end], stoppedOnId || end >= 0);
    }

    [Test]
    public void GreedyReplyIsTheGeneratorsTokensOnTheRenderedConversation()
    {
        var expected = Reference(_reference, ConversationChatMl, new GenerationOptions(MaxNewTokens: 12));
        Assume.That(expected.Stopped, Is.False, "the tiny model happens to stop early; pick another prompt for this test");
        Assert.That(_client.PromptIds(Conversation), Is.EqualTo(expected.PromptIds), "rendered by the template, one BOS");

        var response = _client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 12 }).GetAwaiter().GetResult();
        Assert.That(response.Text, Is.EqualTo(expected.Text));
        Assert.That(response.Text, Is.Not.Empty);
        Assert.That(response.Messages, Has.Count.EqualTo(1));
        Assert.That(response.Messages[0].Role, Is.EqualTo(ChatRole.Assistant));
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Length), "12 tokens without a stop: the limit ended it");
        Assert.That(response.ModelId, Is.EqualTo("dense"), "the model directory's name");
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(expected.PromptIds.Length));
        Assert.That(response.Usage.OutputTokenCount, Is.EqualTo(12));
        Assert.That(response.Usage.TotalTokenCount, Is.EqualTo(expected.PromptIds.Length + 12));
    }

    [Test]
    public void StreamingUpdatesConcatenateToTheResponse()
    {
        var options = new ChatOptions { MaxOutputTokens = 20 };
        var whole = _client.GetResponseAsync(Conversation, options).GetAwaiter().GetResult();
        var updates = Collect(_client.GetStreamingResponseAsync(Conversation, options));

        Assert.That(string.Concat(updates.Select(u => u.Text)), Is.EqualTo(whole.Text));
        Assert.That(updates.Count(u => u.Text.Length > 0), Is.GreaterThan(1), "text comes out as it is decoded, not at the end");
        Assert.That(updates.Take(updates.Count - 1).Select(u => u.FinishReason), Is.All.Null, "only the last update finishes");
        Assert.That(updates[^1].FinishReason, Is.EqualTo(whole.FinishReason));
        var usage = updates[^1].Contents.OfType<UsageContent>().Single().Details;
        Assert.That((usage.InputTokenCount, usage.OutputTokenCount), Is.EqualTo((whole.Usage!.InputTokenCount, whole.Usage.OutputTokenCount)));
        Assert.That(updates.Select(u => u.ResponseId).Distinct().Count(), Is.EqualTo(1), "one response id for all updates");
        foreach (var u in updates)
            Assert.That(u.Text.Length > 0 && char.IsHighSurrogate(u.Text[^1]), Is.False, "no update ends inside a surrogate pair");
        // The standard coalescing gives the same single message.
        var merged = updates.ToChatResponse();
        Assert.That(merged.Text, Is.EqualTo(whole.Text));
        Assert.That(merged.Messages, Has.Count.EqualTo(1));
    }

    [Test]
    public void StopSequenceCutsTheTextAndEndsGeneration()
    {
        var expected = Reference(_reference, ConversationChatMl, new GenerationOptions(MaxNewTokens: 30));
        Assume.That(expected.Text.Length, Is.GreaterThan(8));
        // A stop sequence from the middle of the greedy reply: the reply must end right before its first occurrence.
        var stop = expected.Text.Substring(expected.Text.Length / 2, 2);
        var at = expected.Text.IndexOf(stop, StringComparison.Ordinal);
        var tokensToStop = Enumerable.Range(1, expected.Generated.Length).First(n => _tokenizer.Decode(expected.Generated[..n]).Contains(stop, StringComparison.Ordinal));

        var response = _client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 30, StopSequences = [stop] }).GetAwaiter().GetResult();
        Assert.That(response.Text, Is.EqualTo(expected.Text[..at]));
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        Assert.That(response.Usage!.OutputTokenCount, Is.EqualTo(tokensToStop), "generation ends at the token that completes the stop sequence");

        var streamed = Collect(_client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 30, StopSequences = ["zzz-never", stop] }));
        Assert.That(string.Concat(streamed.Select(u => u.Text)), Is.EqualTo(expected.Text[..at]), "the stream never shows the stop sequence's start");
        Assert.That(streamed[^1].FinishReason, Is.EqualTo(ChatFinishReason.Stop));
    }

    [Test]
    public void SamplingOptionsMapToTheGenerator()
    {
        var chat = new ChatOptions { MaxOutputTokens = 10, Temperature = 0.8f, TopP = 0.9f, TopK = 40, Seed = 7 };
        var expected = Reference(_reference, ConversationChatMl, new GenerationOptions(10, Temperature: 0.8f, TopP: 0.9f, TopK: 40, Seed: 7));
        var greedy = Reference(_reference, ConversationChatMl, new GenerationOptions(10));
        Assume.That(expected.Text, Is.Not.EqualTo(greedy.Text), "the seeded draw happens to equal the greedy reply");
        Assert.That(_client.GetResponseAsync(Conversation, chat).GetAwaiter().GetResult().Text, Is.EqualTo(expected.Text));
    }

    [Test]
    public void AdapterIsAppliedWhenLoadedFromDirectories()
    {
        using var withAdapter = SlothChatClient.FromDirectory(ModelDir, AdapterDir, "chatml", Cpu32);
        using var model = CausalLM.FromPretrained(ModelDir, Cpu32);
        PeftAdapter.Load(model, AdapterDir);
        var expected = Reference(model, ConversationChatMl, new GenerationOptions(MaxNewTokens: 12));
        var plain = Reference(_reference, ConversationChatMl, new GenerationOptions(MaxNewTokens: 12));
        Assert.That(expected.Generated, Is.Not.EqualTo(plain.Generated), "the adapter changes the greedy tokens (else this test proves nothing)");
        var response = withAdapter.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 12 }).GetAwaiter().GetResult();
        Assert.That(response.Text, Is.EqualTo(expected.Text));
        Assert.That(withAdapter.Model.Lora, Is.Not.Null);
    }

    [Test]
    public void CancellationStopsBetweenTokens()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.That(() => _client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 5 }, cancelled.Token).GetAwaiter().GetResult(),
            Throws.InstanceOf<OperationCanceledException>());

        using var midway = new CancellationTokenSource();
        var seen = 0;
        async Task ReadAndCancel()
        {
            await foreach (var u in _client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 60 }, midway.Token))
            {
                seen++;
                midway.Cancel();
            }
        }
        Assert.That(() => ReadAndCancel().GetAwaiter().GetResult(), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(seen, Is.EqualTo(1), "cancelled after the first update: no further update");

        // The client is free again afterwards (the gate was released).
        var after = _client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 3 }).GetAwaiter().GetResult();
        Assert.That(after.Usage!.OutputTokenCount, Is.EqualTo(3));
    }

    [Test]
    public void NonTextContentIsAClearError()
    {
        var image = new AIChatMessage(ChatRole.User, [new TextContent("look"), new DataContent(new byte[] { 1, 2, 3 }, "image/png")]);
        Assert.That(() => _client.GetResponseAsync([image]).GetAwaiter().GetResult(),
            Throws.InstanceOf<NotSupportedException>().With.Message.Contains("DataContent").And.Message.Contains("message 0 (user)"));
        var call = new AIChatMessage(ChatRole.Assistant, [new FunctionCallContent("c1", "weather")]);
        Assert.That(() => Collect(_client.GetStreamingResponseAsync([new AIChatMessage(ChatRole.User, "hi"), call])),
            Throws.InstanceOf<NotSupportedException>().With.Message.Contains("FunctionCallContent").And.Message.Contains("message 1 (assistant)"));
        Assert.That(() => _client.GetResponseAsync([new AIChatMessage(new ChatRole("narrator"), "x")]).GetAwaiter().GetResult(),
            Throws.ArgumentException.With.Message.Contains("role 'narrator'"));
        Assert.That(() => _client.GetResponseAsync([]).GetAwaiter().GetResult(), Throws.ArgumentException.With.Message.Contains("no messages"));
        Assert.That(() => _client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 0 }).GetAwaiter().GetResult(),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("MaxOutputTokens"));
        Assert.That(() => _client.GetResponseAsync(Conversation, new ChatOptions { TopP = 0 }).GetAwaiter().GetResult(),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("ChatOptions.TopP"));
    }

    [Test]
    public void InstructionsBecomeTheSystemPrompt()
    {
        var withInstructions = _client.PromptIds([new AIChatMessage(ChatRole.User, "Hi")], new ChatOptions { Instructions = "Be brief." });
        Assert.That(withInstructions, Is.EqualTo(_tokenizer.Encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", addBos: true)));
    }

    [Test]
    public void MetadataNamesTheProviderAndModel()
    {
        var metadata = _client.GetService<ChatClientMetadata>();
        Assert.That(metadata, Is.Not.Null);
        Assert.That(metadata!.ProviderName, Is.EqualTo("SlothSharp"));
        Assert.That(metadata.DefaultModelId, Is.EqualTo("dense"));
        Assert.That(_client.GetService<CausalLM>(), Is.SameAs(_client.Model));
        Assert.That(_client.GetService(typeof(ChatClientMetadata), "some key"), Is.Null);
    }

    [Test]
    public void LoadingChecksDirectoriesAndTemplate()
    {
        Assert.That(() => SlothChatClient.FromDirectory(Path.Combine(ModelDir, "missing")), Throws.InstanceOf<DirectoryNotFoundException>());
        Assert.That(() => SlothChatClient.FromDirectory(ModelDir, Path.Combine(ModelDir, "no-adapter"), "chatml"),
            Throws.InstanceOf<DirectoryNotFoundException>().With.Message.Contains("adapter"));
        // The tiny model ships no chat template: without a name, that is the error.
        Assert.That(() => SlothChatClient.FromDirectory(ModelDir, loadOptions: Cpu32), Throws.InstanceOf<InvalidDataException>());
    }

    [Test]
    public void DisposeReleasesAnOwnedModelOnly()
    {
        using var model = CausalLM.FromPretrained(ModelDir, Cpu32);
        var borrowed = new SlothChatClient(model, _tokenizer, SlothSharp.Templates.ChatTemplate.BuiltIn("chatml"));
        borrowed.Dispose();
        Assert.That(model.LmHeadWeight.IsInvalid, Is.False, "the caller's model stays usable");
        Assert.That(() => borrowed.GetResponseAsync(Conversation).GetAwaiter().GetResult(), Throws.InstanceOf<ObjectDisposedException>());

        var owning = SlothChatClient.FromDirectory(ModelDir, chatTemplate: "chatml", loadOptions: Cpu32);
        var weight = owning.Model.LmHeadWeight;
        owning.Dispose();
        Assert.That(weight.IsInvalid, Is.True, "the client's own model is released");
    }

    private static List<ChatResponseUpdate> Collect(IAsyncEnumerable<ChatResponseUpdate> updates)
    {
        var list = new List<ChatResponseUpdate>();
        var e = updates.GetAsyncEnumerator();
        try
        {
            while (e.MoveNextAsync().AsTask().GetAwaiter().GetResult()) list.Add(e.Current);
        }
        finally { e.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        return list;
    }
}
