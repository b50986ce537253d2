using System.Text.Json.Nodes;
using SlothSharp.Generation;
using SlothSharp.Models;
using SlothSharp.Templates;
using SlothSharp.Tokenization;

namespace SlothSharp.Chat;

/// <summary>Where a chat reply ends: the stop token ids and the end-of-turn text of a model + tokenizer + template
/// (the rules `sloth chat` follows).</summary>
public static class ChatStops
{
    /// <summary>The text the template writes right after an assistant reply (ChatML's &lt;|im_end|&gt;, Llama 3's
    /// &lt;|eot_id|&gt;), whitespace trimmed and cut at the first line break; null when it writes nothing there or
    /// the template cannot render a one-turn exchange.</summary>
    public static string? EndOfTurnText(ChatTemplate template)
    {
        const string marker = "\u0001sloth-reply\u0001";
        try
        {
            var text = template.Render(new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" },
                                                     new JsonObject { ["role"] = "assistant", ["content"] = marker })).Text;
            var at = text.LastIndexOf(marker, StringComparison.Ordinal);
            if (at < 0) return null;
            var after = text[(at + marker.Length)..].Trim();
            // Only up to the next line: a template may start another block after the turn.
            var nl = after.IndexOf('\n');
            if (nl >= 0) after = after[..nl].Trim();
            return after.Length == 0 ? null : after;
        }
        catch (Exception e) when (e is ChatTemplateException or TemplateException) { return null; }
    }

    /// <summary>The model's EOS ids (config.json and generation_config.json), the tokenizer's EOS, and the end-of-turn
    /// text's id when it is a single token.</summary>
    public static IReadOnlyList<int> StopIds(CausalLM model, HfTokenizer tokenizer, string? endOfTurn)
    {
        var ids = new HashSet<int>(TextGenerator.DefaultStopTokenIds(model));
        if (tokenizer.EosTokenId is { } eos) ids.Add(eos);
        if (endOfTurn is not null && tokenizer.TokenToId(endOfTurn) is { } turn) ids.Add(turn);
        return ids.Order().ToList();
    }

    /// <summary>Index of the earliest occurrence of any of <paramref name="stops"/> in <paramref name="text"/>, or −1.</summary>
    public static int FirstStop(string text, IReadOnlyList<string> stops)
    {
        var best = -1;
        foreach (var s in stops)
        {
            var at = text.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (best < 0 || at < best)) best = at;
        }
        return best;
    }

    /// <summary>How many trailing characters of <paramref name="text"/> could still become the start of one of
    /// <paramref name="stops"/> once more text arrives (they are held back from the stream until that is decided).</summary>
    public static int HeldBack(string text, IReadOnlyList<string> stops)
    {
        var held = 0;
        foreach (var stop in stops)
            for (var n = Math.Min(stop.Length - 1, text.Length); n > held; n--)
                if (text.AsSpan(text.Length - n).SequenceEqual(stop.AsSpan(0, n))) { held = n; break; }
        return held;
    }
}
