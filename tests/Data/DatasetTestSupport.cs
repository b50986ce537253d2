using System.Text;
using System.Text.Json.Nodes;
using SlothSharp.Data;

namespace SlothSharp.Tests.Data;

/// <summary>Paths of tests/data/datasets and a small Llama-3-style chat template written for the tests (the real
/// Jinja engine lives elsewhere).</summary>
internal static class DatasetTestSupport
{
    public static string Dir => Path.Combine(TestEnv.DataDir, "datasets");

    public static string File(string name) => Path.Combine(Dir, name);

    /// <summary>The tokenizer with &lt;|begin_of_text|&gt;, &lt;|start_header_id|&gt;, &lt;|end_header_id|&gt;,
    /// &lt;|eot_id|&gt; (BOS and EOS as Llama 3 Instruct names them).</summary>
    public static string TokenizerDir => Path.Combine(TestEnv.DataDir, "llama3-style-tokenizer");

    public const string Bos = "<|begin_of_text|>";
    public const string Eot = "<|eot_id|>";

    public static string Header(string role) => $"<|start_header_id|>{role}<|end_header_id|>\n\n";

    /// <summary>The text a message shows: its content (text parts joined), or its tool calls as JSON.</summary>
    public static string Body(JsonObject m) =>
        m["tool_calls"] is JsonArray calls ? calls.ToJsonString() : Conversation.ContentText(m);

    /// <summary>Llama 3's layout: BOS (when <paramref name="writeBos"/>), the tools as a system turn, then
    /// header + body + &lt;|eot_id|&gt; per message, and the assistant header as the generation prompt.</summary>
    public static RenderConversation Template(bool writeBos = true) => (messages, tools, generationPrompt) =>
    {
        var sb = new StringBuilder();
        if (writeBos) sb.Append(Bos);
        if (tools is not null) sb.Append(Header("system")).Append("Tools: ").Append(tools.ToJsonString()).Append(Eot);
        foreach (var node in messages)
        {
            var m = (JsonObject)node!;
            sb.Append(Header(Conversation.Role(m)!)).Append(Body(m)).Append(Eot);
        }
        if (generationPrompt) sb.Append(Header("assistant"));
        return sb.ToString();
    };
}
