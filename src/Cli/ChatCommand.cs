using System.CommandLine;
using System.Text.Json.Nodes;
using SlothSharp.Chat;
using SlothSharp.Generation;
using SlothSharp.Models;
using SlothSharp.Templates;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>`sloth chat`: an interactive conversation with a model (and adapter) through its chat template. Each user
/// line is appended to the history, the history is rendered with the generation prompt, and the reply streams to
/// stdout until a stop token (the model's EOS ids, the tokenizer's EOS, the template's end-of-turn token) or the
/// end-of-turn text appears. An empty line or end of input ends the chat; <c>/reset</c> clears the history.</summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "PEFT LoRA adapter directory" };
        var chatTemplate = DatasetInput.ChatTemplateOption();
        var system = new Option<string?>("--system") { Description = "a system prompt at the start of the conversation" };
        var maxNew = CliOptions.PositiveInt("--max-new-tokens", "at most this many tokens per reply", 256);
        var temperature = CliOptions.NonNegativeDouble("--temperature", "0 = greedy (default); > 0 samples", 0);
        var topP = CliOptions.DoubleInRange("--top-p", "nucleus sampling: keep the most likely tokens up to this probability", 1, 0, 1, minExclusive: true);
        var topK = CliOptions.IntAtLeast("--top-k", "sample among the k most likely tokens (0 = all)", 0, 0);
        var seed = new Option<long>("--seed") { Description = "sampling seed", DefaultValueFactory = _ => 0 };
        var device = CliOptions.Device(defaultValue: "auto", allowAuto: true);
        var dtype = CliOptions.Dtype(description: "compute dtype: bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on the CPU)", defaultValue: null);
        var cmd = new Command("chat", "Chat with a model through its chat template (one user message per line; empty line or Ctrl-D ends, /reset clears)")
            { model, adapter, chatTemplate, system, maxNew, temperature, topP, topK, seed, device, dtype };
        cmd.SetAction(r => Run(r.GetValue(model)!, r.GetValue(adapter), r.GetValue(chatTemplate), r.GetValue(system),
            new GenerationOptions(r.GetValue(maxNew), r.GetValue(temperature), r.GetValue(topP), r.GetValue(topK), r.GetValue(seed)),
            CliOptions.ToDevice(r.GetValue(device)!), CliOptions.ToComputeDtype(r.GetValue(dtype)), Console.In, r.InvocationConfiguration.Output,
            prompts: !Console.IsInputRedirected));
        return cmd;
    }

    public static int Run(string modelDir, string? adapter, string? templateName, string? system, GenerationOptions options, Device device, ScalarType? dtype,
                          TextReader input, TextWriter output, bool prompts = false)
    {
        ModelCommandSupport.RequireModelDirectory(modelDir);
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var template = DatasetInput.ResolveTemplate(modelDir, templateName, needed: true)!;
        var endOfTurn = ChatStops.EndOfTurnText(template);
        using var model = ModelCommandSupport.Load(modelDir, adapter, device, dtype);
        var stops = ChatStops.StopIds(model, tokenizer, endOfTurn);
        var history = NewHistory(system);
        var bos = tokenizer.BosTokenId is { } b ? tokenizer.IdToToken(b) : null;
        while (true)
        {
            if (prompts) output.Write("> ");
            output.Flush();
            var line = input.ReadLine();
            if (string.IsNullOrWhiteSpace(line)) break;
            if (line.Trim() == "/reset")
            {
                history = NewHistory(system);
                output.WriteLine("(history cleared)");
                continue;
            }
            history.Add(new JsonObject { ["role"] = "user", ["content"] = line });
            string prompt;
            try { prompt = template.Render(history, new ChatRenderOptions { AddGenerationPrompt = true }).Text; }
            catch (Exception e) when (e is ChatTemplateException or TemplateException)
            {
                history.RemoveAt(history.Count - 1);
                throw new CliException("--chat-template", $"the chat template rejected the conversation: {CliErrors.Clean(e.Message)}");
            }
            var ids = tokenizer.Encode(prompt, addBos: bos is not null && !prompt.StartsWith(bos, StringComparison.Ordinal));
            var reply = StreamReply(model, tokenizer, ids, options with { StopTokenIds = stops }, endOfTurn, output);
            output.WriteLine();
            history.Add(new JsonObject { ["role"] = "assistant", ["content"] = reply });
        }
        return 0;
    }

    private static JsonArray NewHistory(string? system) =>
        system is null ? [] : [new JsonObject { ["role"] = "system", ["content"] = system }];

    /// <summary>Generates one reply, writing it as it comes; text from the end-of-turn string on is not shown (it is
    /// held back while it could still become that string). Returns the reply without stop tokens.</summary>
    internal static string StreamReply(CausalLM model, HfTokenizer tokenizer, int[] promptIds, GenerationOptions options, string? endOfTurn, TextWriter output)
    {
        var decoder = new StreamingTextDecoder(tokenizer);
        var stops = options.StopTokenIds?.ToHashSet() ?? [];
        var reply = "";
        var written = 0;
        var stopped = false;
        foreach (var id in TextGenerator.Generate(model, promptIds, options))
        {
            if (stops.Contains(id)) { stopped = true; break; }
            reply += decoder.Push(id);
            if (endOfTurn is not null && reply.IndexOf(endOfTurn, StringComparison.Ordinal) is var at and >= 0)
            {
                reply = reply[..at];
                stopped = true;
                break;
            }
            var safe = reply.Length - (endOfTurn is null ? 0 : ChatStops.HeldBack(reply, [endOfTurn]));
            if (safe > written)
            {
                output.Write(reply[written..safe]);
                output.Flush();
                written = safe;
            }
        }
        if (!stopped) reply += decoder.Flush();  // the token limit ended the reply: any bytes of an unfinished character
        output.Write(reply[written..]);
        output.Flush();
        return reply;
    }
}
