using System.Text.Json;
using System.Text.Json.Nodes;

namespace SlothSharp.Gguf;

/// <summary>
/// The <c>tokenizer.ggml.*</c> metadata from a Hugging Face tokenizer (tokenizer.json, tokenizer_config.json,
/// config.json, generation_config.json, chat_template.jinja), as llama.cpp's converter writes it:
/// byte-level BPE vocabularies become model <c>gpt2</c> (tokens, token types, merges, and the pre-tokenizer name
/// llama.cpp uses for that split regex), SentencePiece-style BPE with byte fallback becomes <c>llama</c> (tokens,
/// scores, token types).
/// </summary>
public sealed class GgufTokenizerMetadata
{
    // llama.cpp token types (llama_token_type).
    private const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, ByteToken = 6;

    public required string Model { get; init; }
    public string? Pre { get; init; }
    public required string[] Tokens { get; init; }
    public required int[] TokenTypes { get; init; }
    public float[]? Scores { get; init; }
    public string[]? Merges { get; init; }
    public int? BosId { get; init; }
    public int? EosId { get; init; }
    public int? PadId { get; init; }
    public int? UnkId { get; init; }
    public bool? AddBos { get; init; }
    public bool? AddEos { get; init; }
    /// <summary>SentencePiece models: whether llama.cpp puts a space (▁) before the text and after each special
    /// token (Llama 2's Prepend normalizer: yes; Gemma: no). Null for byte-level BPE.</summary>
    public bool? AddSpacePrefix { get; init; }
    public string? ChatTemplate { get; init; }
    /// <summary>Notes for the user (e.g. a pre-tokenizer llama.cpp does not know by name).</summary>
    public List<string> Warnings { get; } = [];

    /// <summary>The token string of <paramref name="id"/> (for stop words), null when out of range.</summary>
    public string? TokenText(int? id) => id is { } i && i >= 0 && i < Tokens.Length ? Tokens[i] : null;

    public void AddTo(GgufWriter w)
    {
        w.Add("tokenizer.ggml.model", GgufValue.Str(Model));
        if (Pre is not null) w.Add("tokenizer.ggml.pre", GgufValue.Str(Pre));
        w.Add("tokenizer.ggml.tokens", GgufValue.Strings(Tokens));
        if (Scores is not null) w.Add("tokenizer.ggml.scores", GgufValue.Float32s(Scores));
        w.Add("tokenizer.ggml.token_type", GgufValue.Int32s(TokenTypes));
        if (Merges is not null) w.Add("tokenizer.ggml.merges", GgufValue.Strings(Merges));
        if (BosId is { } bos) w.Add("tokenizer.ggml.bos_token_id", GgufValue.U32((uint)bos));
        if (EosId is { } eos) w.Add("tokenizer.ggml.eos_token_id", GgufValue.U32((uint)eos));
        if (UnkId is { } unk) w.Add("tokenizer.ggml.unknown_token_id", GgufValue.U32((uint)unk));
        if (PadId is { } pad) w.Add("tokenizer.ggml.padding_token_id", GgufValue.U32((uint)pad));
        if (AddBos is { } ab) w.Add("tokenizer.ggml.add_bos_token", GgufValue.Bool(ab));
        if (AddEos is { } ae) w.Add("tokenizer.ggml.add_eos_token", GgufValue.Bool(ae));
        if (AddSpacePrefix is { } asp) w.Add("tokenizer.ggml.add_space_prefix", GgufValue.Bool(asp));
        if (ChatTemplate is not null) w.Add("tokenizer.chat_template", GgufValue.Str(ChatTemplate));
    }

    /// <summary>Reads the tokenizer files of a model directory. <paramref name="config"/> is config.json (for the
    /// vocabulary size and fallback special ids).</summary>
    public static GgufTokenizerMetadata FromDirectory(string modelDir, JsonObject config)
    {
        var tokPath = Path.Combine(modelDir, "tokenizer.json");
        if (!File.Exists(tokPath))
            throw new FileNotFoundException($"{tokPath} not found: the GGUF export needs the Hugging Face tokenizer.json (tokenizer.model alone is not supported)", tokPath);
        var tok = ReadJson(tokPath);
        var tcfg = File.Exists(Path.Combine(modelDir, "tokenizer_config.json")) ? ReadJson(Path.Combine(modelDir, "tokenizer_config.json")) : new JsonObject();
        var gen = File.Exists(Path.Combine(modelDir, "generation_config.json")) ? ReadJson(Path.Combine(modelDir, "generation_config.json")) : new JsonObject();

        var model = tok["model"] as JsonObject ?? throw new InvalidDataException($"{tokPath}: 'model' object missing");
        var modelType = model["type"]?.GetValue<string>();
        if (modelType != "BPE")
            throw new NotSupportedException($"{tokPath}: tokenizer model '{modelType}' cannot be exported to GGUF yet (BPE only)");
        var vocab = model["vocab"] as JsonObject ?? throw new InvalidDataException($"{tokPath}: model.vocab missing");
        var byteFallback = model["byte_fallback"] is JsonValue bf && bf.GetValue<bool>();

        var byId = new Dictionary<int, string>();
        foreach (var (token, idNode) in vocab) byId[idNode!.GetValue<int>()] = token;
        var added = new Dictionary<int, bool>(); // id → special
        if (tok["added_tokens"] is JsonArray addedArr)
            foreach (var a in addedArr.OfType<JsonObject>())
            {
                var id = a["id"]!.GetValue<int>();
                byId[id] = a["content"]!.GetValue<string>();
                added[id] = a["special"] is JsonValue s && s.GetValue<bool>();
            }
        var size = Math.Max(byId.Count == 0 ? 0 : byId.Keys.Max() + 1, config["vocab_size"] is JsonValue vs ? vs.GetValue<int>() : 0);
        var tokens = new string[size];
        var types = new int[size];
        var unkToken = model["unk_token"] is JsonValue ut ? ut.GetValue<string>() : null;
        for (var i = 0; i < size; i++)
        {
            if (!byId.TryGetValue(i, out var t))
            {
                // Embedding rows beyond the tokenizer (padded vocabularies) get placeholder tokens, as the converter does.
                tokens[i] = $"[PAD{i}]";
                types[i] = Unused;
                continue;
            }
            tokens[i] = t;
            // A non-special added token with a ▁ that the BPE vocabulary also holds (Gemma's "▁▁", "▁▁▁", ...): Hugging
            // Face's tokenizer reaches it through its merges from spaces, and from raw text only where the text holds
            // the character ▁ itself. For llama.cpp it is written as a normal piece (merged by score, its ▁ decoded as
            // a space): as a user-defined one llama.cpp would decode every whitespace run it generates verbatim, as
            // "▁▁". The cost: text that contains U+2581 next to spaces may split differently from Hugging Face.
            types[i] = added.TryGetValue(i, out var special) && !(byteFallback && !special && t.Contains('\u2581') && vocab.ContainsKey(t))
                ? (special ? Control : UserDefined)
                : t == unkToken ? Unknown
                : byteFallback && t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t.EndsWith('>') ? ByteToken
                : Normal;
        }

        string[]? merges = null;
        float[]? scores = null;
        string ggmlModel;
        string? pre = null;
        bool? addSpacePrefix = null;
        var warnings = new List<string>();
        var mergeList = (model["merges"] as JsonArray ?? []).Select(m => m switch
        {
            JsonValue v => v.GetValue<string>(),
            JsonArray pair when pair.Count == 2 => $"{pair[0]!.GetValue<string>()} {pair[1]!.GetValue<string>()}",
            _ => throw new InvalidDataException($"{tokPath}: merge entry {m?.ToJsonString()} is neither \"a b\" nor [a, b]"),
        }).ToArray();
        if (byteFallback)
        {
            // SentencePiece-style BPE (Llama 2, Gemma, Mistral v0.1) becomes llama.cpp's SPM tokenizer, as the
            // converter writes it ("llama", pre-tokenizer "default").
            ggmlModel = "llama";
            pre = "default";
            scores = MergeRankScores(mergeList, vocab, size);
            addSpacePrefix = PrependsSpace(tok);
            // Added tokens keep their text. llama.cpp's converter turns the ▁ of Gemma's user-defined whitespace
            // tokens ("▁▁", "▁▁▁", ...) into spaces, as SentencePiece matches them; Hugging Face's tokenizer (whose
            // ids we follow) never finds them in the raw text but reaches them through its merges, which the
            // merge-rank scores give llama.cpp too.
        }
        else
        {
            ggmlModel = "gpt2";
            merges = mergeList;
            pre = PreTokenizerName(tok["pre_tokenizer"], warnings);
        }

        int? Id(string key)
        {
            var node = tcfg[key];
            var content = node switch
            {
                JsonValue v when v.TryGetValue<string>(out var s) => s,
                JsonObject o => o["content"]?.GetValue<string>(),
                _ => null,
            };
            if (content is not null)
                foreach (var (id, t) in byId)
                    if (t == content) return id;
            return FirstInt(config[key + "_id"]) ?? FirstInt(gen[key + "_id"]);
        }

        var (addBos, addEos) = AddSpecialFlags(tok, tcfg);
        return new GgufTokenizerMetadata
        {
            Model = ggmlModel,
            Pre = pre,
            Tokens = tokens,
            TokenTypes = types,
            Scores = scores,
            Merges = merges,
            BosId = Id("bos_token"),
            EosId = Id("eos_token"),
            PadId = Id("pad_token"),
            UnkId = Id("unk_token"),
            AddBos = addBos,
            AddEos = addEos,
            AddSpacePrefix = addSpacePrefix,
            ChatTemplate = ReadChatTemplate(modelDir, tcfg),
        }.WithWarnings(warnings);
    }

    private GgufTokenizerMetadata WithWarnings(List<string> w)
    {
        Warnings.AddRange(w);
        return this;
    }

    /// <summary>
    /// Scores for llama.cpp's SPM tokenizer that reproduce the Hugging Face BPE merges: llama.cpp repeatedly merges
    /// the adjacent pair whose concatenation is the vocabulary token of highest score (leftmost on ties), while
    /// Hugging Face merges the pair of lowest merge rank. Scoring each token by minus the rank of the first merge that
    /// produces it makes the two pick the same pair. (Scores by id, the converter's SentencePiece scores for Llama 2,
    /// differ: Llama 2's "▁▁" is id 259 but its merge comes late.) Tokens no merge produces (bytes, single
    /// characters, specials) are never a merge result in either tokenizer; they get minus the merge count, below all.
    /// </summary>
    private static float[] MergeRankScores(string[] merges, JsonObject vocab, int size)
    {
        var scores = new float[size];
        Array.Fill(scores, -merges.Length);
        var seen = new bool[size];
        for (var rank = 0; rank < merges.Length; rank++)
        {
            var m = merges[rank];
            var space = m.IndexOf(' ', 1);
            if (space < 0) continue;
            var merged = string.Concat(m.AsSpan(0, space), m.AsSpan(space + 1));
            if (vocab[merged] is JsonValue idNode && idNode.GetValue<int>() is var id && id < size && !seen[id])
            {
                seen[id] = true;
                scores[id] = -rank;
            }
        }
        return scores;
    }

    /// <summary>Whether the tokenizer puts ▁ before the text: a <c>Prepend("▁")</c> normalizer (Llama 2) or a
    /// Metaspace pre-tokenizer that prepends (prepend_scheme first/always, or the older add_prefix_space).</summary>
    private static bool PrependsSpace(JsonObject tok)
    {
        static bool Any(JsonNode? n, Func<JsonObject, bool> test) => n switch
        {
            JsonObject o => test(o) || o.Any(kv => Any(kv.Value, test)),
            JsonArray a => a.Any(v => Any(v, test)),
            _ => false,
        };
        static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
        return Any(tok["normalizer"], o => Str(o, "type") == "Prepend" && Str(o, "prepend") == "\u2581")
               || Any(tok["pre_tokenizer"], o => Str(o, "type") == "Metaspace"
                   && (Str(o, "prepend_scheme") is { } scheme ? scheme != "never" : o["add_prefix_space"] is not JsonValue ap || ap.GetValue<bool>()));
    }

    private static int? FirstInt(JsonNode? n) => n switch
    {
        JsonValue v when v.TryGetValue<int>(out var i) => i,
        JsonArray a when a.Count > 0 && a[0] is JsonValue v0 && v0.TryGetValue<int>(out var i0) => i0,
        _ => null,
    };

    /// <summary>add_bos_token / add_eos_token from tokenizer_config.json, else from the TemplateProcessing
    /// post-processor (a special token before/after $A).</summary>
    private static (bool? Bos, bool? Eos) AddSpecialFlags(JsonObject tok, JsonObject tcfg)
    {
        bool? bos = tcfg["add_bos_token"] is JsonValue b ? b.GetValue<bool>() : null;
        bool? eos = tcfg["add_eos_token"] is JsonValue e ? e.GetValue<bool>() : null;
        var post = tok["post_processor"] as JsonObject;
        var templates = post?["type"]?.GetValue<string>() == "Sequence" && post["processors"] is JsonArray procs
            ? procs.OfType<JsonObject>().FirstOrDefault(p => p["type"]?.GetValue<string>() == "TemplateProcessing")
            : post?["type"]?.GetValue<string>() == "TemplateProcessing" ? post : null;
        if (templates?["single"] is JsonArray single && single.Count > 0)
        {
            bos ??= single[0] is JsonObject first && first.ContainsKey("SpecialToken");
            eos ??= single.Count > 1 && single[^1] is JsonObject last && last.ContainsKey("SpecialToken");
        }
        return (bos ?? false, eos ?? false);
    }

    private static string? ReadChatTemplate(string dir, JsonObject tcfg)
    {
        var jinja = Path.Combine(dir, "chat_template.jinja");
        if (File.Exists(jinja)) return File.ReadAllText(jinja);
        return tcfg["chat_template"] switch
        {
            JsonValue v => v.GetValue<string>(),
            JsonArray named => named.OfType<JsonObject>().FirstOrDefault(t => t["name"]?.GetValue<string>() == "default")?["template"]?.GetValue<string>(),
            _ => null,
        };
    }

    // The split regexes of the vocabularies llama.cpp knows by name (its converter identifies them by hashing a
    // tokenization; we recognize the regex itself).
    private const string Llama3Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>llama.cpp's name for the pre-tokenizer: gpt-2 (plain byte-level split), llama-bpe (Llama 3),
    /// qwen2; anything else is written as "default" with a warning.</summary>
    private static string PreTokenizerName(JsonNode? pre, List<string> warnings)
    {
        var text = pre?.ToJsonString() ?? "";
        var regexes = new List<string>();
        Collect(pre, regexes);
        if (regexes.Contains(Llama3Regex)) return "llama-bpe";
        if (regexes.Contains(Qwen2Regex)) return "qwen2";
        if (pre is JsonObject o && o["type"]?.GetValue<string>() == "ByteLevel" && (o["use_regex"] is not JsonValue ur || ur.GetValue<bool>()))
            return "gpt-2";
        warnings.Add($"pre-tokenizer {(text.Length > 120 ? text[..120] + "..." : text)} is not one llama.cpp knows by name; written as 'default', so llama.cpp may split text differently");
        return "default";
    }

    private static void Collect(JsonNode? n, List<string> regexes)
    {
        switch (n)
        {
            case JsonObject o:
                if (o["pattern"] is JsonObject p && p["Regex"] is JsonValue r) regexes.Add(r.GetValue<string>());
                foreach (var (_, v) in o) Collect(v, regexes);
                break;
            case JsonArray a:
                foreach (var v in a) Collect(v, regexes);
                break;
        }
    }

    private static JsonObject ReadJson(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message}", e);
        }
    }
}
