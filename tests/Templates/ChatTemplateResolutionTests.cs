using System.Text.Json.Nodes;
using NUnit.Framework;
using SlothSharp.Templates;

namespace SlothSharp.Tests.Templates;

/// <summary>Where a model's chat template comes from (transformers' order), special tokens from
/// tokenizer_config.json, <c>--chat-template NAME|FILE</c> resolution and the typed overload.</summary>
public class ChatTemplateResolutionTests() : TempDirFixture("chat-template")
{
    private static readonly JsonArray OneUser = new(new JsonObject { ["role"] = "user", ["content"] = "hi" });

    private void WriteConfig(JsonNode? chatTemplate, JsonNode? bos = null)
    {
        var config = new JsonObject { ["eos_token"] = "</s>" };
        if (bos is not null) config["bos_token"] = bos;
        if (chatTemplate is not null) config["chat_template"] = chatTemplate;
        File.WriteAllText(Path.Combine(Dir, "tokenizer_config.json"), config.ToJsonString());
    }

    [Test]
    public void ConfigStringWithAddedTokenDictSpecialTokens()
    {
        WriteConfig("{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}",
            new JsonObject { ["__type"] = "AddedToken", ["content"] = "<｜begin▁of▁sentence｜>", ["lstrip"] = false });
        var t = ChatTemplate.FromModelDirectory(Dir);
        Assert.That(t.Render(OneUser).Text, Is.EqualTo("<｜begin▁of▁sentence｜>|</s>|False"));
    }

    [Test]
    public void ChatTemplateJinjaFileWinsOverTheConfig()
    {
        WriteConfig("from config");
        File.WriteAllText(Path.Combine(Dir, "chat_template.jinja"), "from file {{ eos_token }}\n");
        var t = ChatTemplate.FromModelDirectory(Dir);
        Assert.That(t.Render(OneUser).Text, Is.EqualTo("from file </s>"), "one trailing newline dropped, as Jinja does");
        Assert.That(t.Name, Does.EndWith("chat_template.jinja"));
    }

    [Test]
    public void NamedTemplatesFromAListOrAdditionalFiles()
    {
        WriteConfig(new JsonArray(
            new JsonObject { ["name"] = "default", ["template"] = "D" },
            new JsonObject { ["name"] = "tool_use", ["template"] = "T" }));
        Directory.CreateDirectory(Path.Combine(Dir, "additional_chat_templates"));
        File.WriteAllText(Path.Combine(Dir, "additional_chat_templates", "rag.jinja"), "R");
        Assert.That(ChatTemplate.FromModelDirectory(Dir).Render(OneUser).Text, Is.EqualTo("D"));
        Assert.That(ChatTemplate.FromModelDirectory(Dir, "tool_use").Render(OneUser).Text, Is.EqualTo("T"));
        Assert.That(ChatTemplate.FromModelDirectory(Dir, "rag").Render(OneUser).Text, Is.EqualTo("R"));
        Assert.That(ChatTemplate.Resolve("tool_use", Dir).Render(OneUser).Text, Is.EqualTo("T"));
        var e = Assert.Throws<InvalidDataException>(() => ChatTemplate.FromModelDirectory(Dir, "nope"));
        Assert.That(e!.Message, Does.Contain("named 'nope'").And.Contain("default, tool_use").And.Contain("rag").And.Contain("chatml"));
    }

    [Test]
    public void NoTemplateSaysWhatToDo()
    {
        WriteConfig(null);
        var e = Assert.Throws<InvalidDataException>(() => ChatTemplate.FromModelDirectory(Dir));
        Assert.That(e!.Message, Does.Contain("has no chat template").And.Contain("Built-in templates for base models: chatml, llama-3"));
    }

    [Test]
    public void BadConfigEntriesAreNamed()
    {
        WriteConfig(new JsonArray(new JsonObject { ["name"] = "default" }));
        var e = Assert.Throws<InvalidDataException>(() => ChatTemplate.FromModelDirectory(Dir));
        Assert.That(e!.Message, Does.Contain("chat_template[0] must be an object with string 'name' and 'template'"));
        File.WriteAllText(Path.Combine(Dir, "tokenizer_config.json"), "{ not json");
        Assert.That(() => ChatTemplate.FromModelDirectory(Dir), Throws.TypeOf<InvalidDataException>().With.Message.Contains("invalid JSON"));
    }

    [Test]
    public void ResolveBuiltInFileOrFails()
    {
        WriteConfig(null, "<s>");
        var builtIn = ChatTemplate.Resolve("llama-3", Dir);
        Assert.That(builtIn.Render(OneUser, new ChatRenderOptions { AddGenerationPrompt = true }).Text,
            Is.EqualTo("<s><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"));
        var file = Path.Combine(Dir, "mine.jinja");
        File.WriteAllText(file, "{{ bos_token }}{{ messages[0].content | upper }}");
        Assert.That(ChatTemplate.Resolve(file, Dir).Render(OneUser).Text, Is.EqualTo("<s>HI"));
        var e = Assert.Throws<ArgumentException>(() => ChatTemplate.Resolve("not-a-template", Dir));
        Assert.That(e!.Message, Does.Contain("neither a built-in (chatml, llama-3, gemma, mistral, phi-3, qwen-2.5, alpaca)"));
    }

    [Test]
    public void TypedMessagesRenderAsTheirJson()
    {
        var t = ChatTemplate.BuiltIn("qwen-2.5");
        var typed = new[]
        {
            ChatMessage.User("Weather in Oslo?"),
            new ChatMessage("assistant", null) { ToolCalls = [new ChatToolCall("get_weather", new JsonObject { ["city"] = "Oslo" }, "call1")] },
            ChatMessage.Tool("-3", "call1"),
        };
        var json = new JsonArray(typed.Select(m => (JsonNode?)m.ToJson()).ToArray());
        var a = t.Render(typed);
        Assert.That(a.Text, Is.EqualTo(t.Render(json).Text));
        Assert.That(a.Text, Does.Contain("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>"));
        Assert.That(a.GenerationSpans, Has.Count.EqualTo(1));
        var span = a.GenerationSpans[0];
        Assert.That(a.Text.Substring(span.Start, span.Length), Does.StartWith("<tool_call>").And.EndWith("<|im_end|>"));
    }

    [Test]
    public void ReservedVariablesAreRejected()
    {
        var t = ChatTemplate.BuiltIn("chatml");
        var options = new ChatRenderOptions { Variables = new Dictionary<string, JsonNode?> { ["messages"] = new JsonArray() } };
        Assert.Throws<ArgumentException>(() => t.Render(OneUser, options));
    }

    [Test]
    public void ExtraVariablesAndClockReachTheTemplate()
    {
        var t = ChatTemplate.FromString("{{ enable_thinking }} {{ strftime_now('%d %b %Y') }} {{ tools }} {{ documents }}");
        var options = new ChatRenderOptions
        {
            Variables = new Dictionary<string, JsonNode?> { ["enable_thinking"] = false },
            Clock = TemplateGoldens.FixedClock,
        };
        Assert.That(t.Render(OneUser, options).Text, Is.EqualTo("False 26 Jul 2024 None None"));
    }
}
