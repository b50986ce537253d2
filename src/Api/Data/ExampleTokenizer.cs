using System.Text;
using System.Text.Json.Nodes;
using SlothSharp.Tokenization;

namespace SlothSharp.Data;

/// <summary>
/// Tokenizes <see cref="TrainingExample"/>s with per-token labels.
/// <list type="bullet">
/// <item>Text: BOS (when the tokenizer has one) + text + EOS, every token trained.</item>
/// <item>Prompt/completion strings: prompt tokens (with BOS) then completion tokens + EOS; the completion and EOS are
/// trained (all tokens with <see cref="TrainOn.All"/>). The pair is tokenized as one text when that keeps the
/// prompt's tokens as a prefix, else prompt and completion are tokenized apart.</item>
/// <item>Conversations: the template's full render is tokenized; each trained assistant turn i spans, by TRL's prefix
/// rule, from the end of render(messages[..i], generation prompt) to the end of render(messages[..i+1]), so the reply
/// and the template's end-of-turn are trained and the turn header is not. The rule needs each render's tokens to
/// begin with the shorter one's; where that fails (a BPE merge across the boundary, or a template that rewrites
/// earlier turns, e.g. drops reasoning), the span is found in characters: first by the same rule on the rendered
/// strings, then by locating the reply's text in the full render (plus the end-of-turn text the template writes
/// after it), and mapped to the tokens that overlap it. If neither works the error says which turn and why.</item>
/// </list>
/// BOS: added in front of a render unless the render already starts with the BOS token's text.
/// </summary>
public sealed class ExampleTokenizer
{
    private readonly HfTokenizer _tokenizer;
    private readonly RenderConversation? _render;
    private readonly string? _bosText;

    public ExampleTokenizer(HfTokenizer tokenizer, RenderConversation? render)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _render = render;
        _bosText = tokenizer.BosTokenId is { } b ? tokenizer.IdToToken(b) : null;
    }

    public TokenizedExample Tokenize(TrainingExample example, TrainOn trainOn = TrainOn.Default)
    {
        ArgumentNullException.ThrowIfNull(example);
        var result = example.Kind switch
        {
            ExampleKind.Text => TokenizeText(example, trainOn),
            ExampleKind.PromptCompletion => TokenizePromptCompletion(example, trainOn),
            ExampleKind.Conversation => TokenizeConversation(example, example.Messages!, trainOn),
            ExampleKind.ConversationalPromptCompletion => TokenizeConversation(example,
                new JsonArray([.. example.Messages!.Select(m => m?.DeepClone()), .. example.CompletionMessages!.Select(m => m?.DeepClone())]),
                trainOn, firstTrained: example.Messages!.Count),
            _ => throw new ArgumentOutOfRangeException(nameof(example)),
        };
        if (result.Targets == 0)
            throw new InvalidDataException($"{example.Source}: no token of this example is trained (train-on {trainOn}, {result.Ids.Length} tokens): it would add nothing but zero loss");
        return result;
    }

    private TokenizedExample TokenizeText(TrainingExample example, TrainOn trainOn)
    {
        if (trainOn is TrainOn.Assistant or TrainOn.LastAssistant)
            throw new InvalidDataException($"{example.Source}: train-on {trainOn} needs conversations or prompt/completion rows; this row is plain text (use train-on all)");
        var ids = WithEos(_tokenizer.Encode(example.Text!, addBos: _tokenizer.BosTokenId is not null));
        return new TokenizedExample(ids, Filled(ids.Length, true), example.Source);
    }

    private TokenizedExample TokenizePromptCompletion(TrainingExample example, TrainOn trainOn)
    {
        var addBos = _tokenizer.BosTokenId is not null;
        var prompt = _tokenizer.Encode(example.Prompt!, addBos);
        var joint = _tokenizer.Encode(example.Prompt! + example.Completion!, addBos);
        var ids = WithEos(joint.AsSpan().StartsWith(prompt) ? joint : [.. prompt, .. _tokenizer.Encode(example.Completion!)]);
        var trained = Filled(ids.Length, trainOn == TrainOn.All);
        for (var j = prompt.Length; j < ids.Length; j++) trained[j] = true;
        return new TokenizedExample(ids, trained, example.Source);
    }

    private TokenizedExample TokenizeConversation(TrainingExample example, JsonArray messages, TrainOn trainOn, int firstTrained = 0)
    {
        if (_render is null)
            throw new InvalidOperationException($"{example.Source}: a conversation needs a chat template to render it (none was given: CLI --chat-template, or the model's tokenizer_config.json chat_template)");
        var tools = example.Tools;
        var fullText = Render(example, messages, messages.Count, tools, false);
        var full = Encode(fullText);
        var trained = Filled(full.Length, trainOn == TrainOn.All);
        if (trainOn == TrainOn.All) return new TokenizedExample(full, trained, example.Source);

        var turns = Enumerable.Range(firstTrained, messages.Count - firstTrained)
            .Where(i => Conversation.Role((JsonObject)messages[i]!) == "assistant").ToList();
        // A prompt/completion pair trains its completion (all of it) whatever the mode says about "last".
        if (trainOn == TrainOn.LastAssistant && example.Kind == ExampleKind.Conversation) turns = [turns[^1]];
        TokenOffsets? offsets = null;
        var cursor = 0;  // characters of fullText already covered by located replies (the fallback searches after it)
        foreach (var i in turns)
        {
            var prefixText = Render(example, messages, i, tools, true);
            var endText = Render(example, messages, i + 1, tools, false);
            var prefix = Encode(prefixText);
            var end = i + 1 == messages.Count ? full : Encode(endText);
            if (end.Length > prefix.Length && end.AsSpan().StartsWith(prefix) && full.AsSpan().StartsWith(end))
            {
                Array.Fill(trained, true, prefix.Length, end.Length - prefix.Length);
                cursor = Math.Max(cursor, Math.Min(fullText.Length, endText.Length));
                continue;
            }
            // Fallbacks in characters.
            offsets ??= TokenOffsets.Of(_tokenizer, full, fullText, AddsBos(fullText), example.Source);
            int start, stop;
            if (endText.Length > prefixText.Length && endText.StartsWith(prefixText, StringComparison.Ordinal) && fullText.StartsWith(endText, StringComparison.Ordinal))
                (start, stop) = (prefixText.Length, endText.Length);
            else
                (start, stop) = LocateReply(example, (JsonObject)messages[i]!, i, fullText, endText, cursor);
            offsets.Mark(trained, start, stop);
            cursor = stop;
        }
        return new TokenizedExample(full, trained, example.Source);
    }

    /// <summary>Characters [start, stop) of the reply of message <paramref name="i"/> in <paramref name="fullText"/>:
    /// its content, found at or after <paramref name="cursor"/>, and as much of the text the template writes after the
    /// content when the reply ends the conversation (its end-of-turn) as the full render repeats there.</summary>
    private static (int Start, int Stop) LocateReply(TrainingExample example, JsonObject message, int i, string fullText, string endText, int cursor)
    {
        var why = $"{example.Source}: assistant message {i}: the chat template's render of messages[..{i + 1}] does not extend its render of messages[..{i}] with the generation prompt (the template rewrites earlier turns)";
        var content = Conversation.ContentText(message);
        if (content.Length == 0)
            throw new InvalidDataException($"{why}, and the reply has no text content to locate in the full render (e.g. a tool call only), so its tokens cannot be found");
        var at = fullText.IndexOf(content, cursor, StringComparison.Ordinal);
        if (at < 0)
            throw new InvalidDataException($"{why}, and the reply's text does not appear in the full render (the template changes it), so its tokens cannot be found");
        var stop = at + content.Length;
        var last = endText.LastIndexOf(content, StringComparison.Ordinal);
        if (last >= 0)
        {
            var suffix = endText.AsSpan(last + content.Length);
            stop += fullText.AsSpan(stop).CommonPrefixLength(suffix);
        }
        return (at, stop);
    }

    private string Render(TrainingExample example, JsonArray messages, int count, JsonArray? tools, bool generationPrompt)
    {
        var slice = new JsonArray(messages.Take(count).Select(m => m?.DeepClone()).ToArray());
        try { return _render!(slice, tools?.DeepClone().AsArray(), generationPrompt); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"{example.Source}: the chat template failed on the first {count} messages ({Conversation.Describe(slice)}): {e.Message}", e);
        }
    }

    private bool AddsBos(string rendered) => _bosText is not null && !rendered.StartsWith(_bosText, StringComparison.Ordinal);

    private int[] Encode(string rendered) => _tokenizer.Encode(rendered, AddsBos(rendered));

    private int[] WithEos(int[] ids) => _tokenizer.EosTokenId is { } e ? [.. ids, e] : ids;

    private static bool[] Filled(int n, bool value)
    {
        var a = new bool[n];
        if (value) Array.Fill(a, true);
        return a;
    }

    /// <summary>Byte offsets of each token in the UTF-8 of the rendered text (after an added BOS), to map character
    /// spans to tokens.</summary>
    private sealed class TokenOffsets
    {
        private readonly int[] _starts, _ends;
        private readonly string _text;
        private readonly int _shift;

        private TokenOffsets(int[] starts, int[] ends, string text, int shift) => (_starts, _ends, _text, _shift) = (starts, ends, text, shift);

        public static TokenOffsets Of(HfTokenizer tokenizer, int[] ids, string text, bool addedBos, string source)
        {
            var bytes = new List<byte>();
            var starts = new int[ids.Length];
            var ends = new int[ids.Length];
            for (var j = 0; j < ids.Length; j++)
            {
                starts[j] = bytes.Count;
                tokenizer.AppendTokenBytes(ids[j], skipSpecialTokens: false, bytes);
                ends[j] = bytes.Count;
            }
            var shift = addedBos ? ends[0] : 0;
            if (!bytes.Skip(shift).SequenceEqual(Encoding.UTF8.GetBytes(text)))
                throw new InvalidDataException($"{source}: the tokens of the rendered conversation do not spell its text byte for byte, so reply spans cannot be mapped to tokens");
            return new TokenOffsets(starts, ends, text, shift);
        }

        /// <summary>Marks every token overlapping characters [start, stop) of the text.</summary>
        public void Mark(bool[] trained, int start, int stop)
        {
            var b0 = _shift + Encoding.UTF8.GetByteCount(_text.AsSpan(0, start));
            var b1 = b0 + Encoding.UTF8.GetByteCount(_text.AsSpan(start, stop - start));
            for (var j = 0; j < trained.Length; j++)
                if (_starts[j] < b1 && _ends[j] > b0 && _ends[j] > _starts[j]) trained[j] = true;
        }
    }
}
