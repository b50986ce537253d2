using System.Text.Json;

namespace SlothSharp.Tokenization;

/// <summary>Parses tokenizer.json / tokenizer_config.json into the parts of <see cref="HfTokenizer"/>; every
/// unsupported or malformed field is an <see cref="InvalidDataException"/> naming the file and the field.</summary>
internal static class TokenizerJsonReader
{
    public delegate HfTokenizer Builder(BytePairModel model, Dictionary<string, int> vocab, List<AddedToken> added,
        List<RegexSplit> splits, bool addPrefixSpace, int? bos, int? eos, int? pad, bool addsBos);

    private static InvalidDataException Bad(string path, string field, string message) => new($"{path}: {field}: {message}");

    public static HfTokenizer Read(string path, string? configPath, Builder build)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad(path, "(root)", "expected a JSON object");
            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw Bad(path, "model", "missing");
            var type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            // tokenizers omits "type" for BPE in some older files; the presence of merges identifies it.
            if (type is null && model.TryGetProperty("merges", out _)) type = "BPE";
            if (type != "BPE")
                throw Bad(path, "model.type", $"'{type ?? "(none)"}' is not supported: only byte-level BPE (Llama 3, GPT-2 style) tokenizers are; " +
                                              "SentencePiece/Unigram/WordPiece models (e.g. Llama 2) are not");
            if (Bool(model, "byte_fallback", path, "model.byte_fallback"))
                throw Bad(path, "model.byte_fallback", "true (a SentencePiece-style BPE such as Llama 2's) is not supported; only byte-level BPE is");
            foreach (var f in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
                if (model.TryGetProperty(f, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0)
                    throw Bad(path, $"model.{f}", "is not supported (byte-level BPE has none)");
            if (model.TryGetProperty("dropout", out var dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() > 0)
                throw Bad(path, "model.dropout", "BPE dropout is not supported (it makes encoding random)");

            var vocab = ReadVocab(model, path);
            var added = ReadAddedTokens(root, path);
            var merges = ReadMerges(model, vocab, path);
            int? unk = null;
            if (model.TryGetProperty("unk_token", out var unkTok) && unkTok.ValueKind == JsonValueKind.String)
                unk = vocab.TryGetValue(unkTok.GetString()!, out var u) ? u : throw Bad(path, "model.unk_token", $"'{unkTok.GetString()}' is not in model.vocab");
            var bpe = new BytePairModel(vocab, merges, Bool(model, "ignore_merges", path, "model.ignore_merges"), unk);

            if (root.TryGetProperty("normalizer", out var norm) && norm.ValueKind != JsonValueKind.Null)
                throw Bad(path, "normalizer", $"'{TypeOf(norm)}' is not supported (byte-level BPE tokenizers such as Llama 3 have none)");
            var (splits, prefix) = ReadPreTokenizer(root, path);
            ReadDecoder(root, path);

            int? bosFromTemplate = BosFromPostProcessor(root, vocab, added);
            int? bos = bosFromTemplate, eos = null, pad = null;
            var addsBos = bosFromTemplate is not null;
            if (configPath is not null) ReadConfig(configPath, vocab, added, ref bos, ref eos, ref pad, ref addsBos);
            return build(bpe, vocab, added, splits, prefix, bos, eos, pad, addsBos);
        }
    }

    private static bool Bool(JsonElement obj, string name, string path, string field)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return false;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(path, field, "expected true or false"),
        };
    }

    private static string TypeOf(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : e.ValueKind.ToString();

    private static Dictionary<string, int> ReadVocab(JsonElement model, string path)
    {
        if (!model.TryGetProperty("vocab", out var v) || v.ValueKind != JsonValueKind.Object) throw Bad(path, "model.vocab", "missing or not an object");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in v.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out var id) || id < 0)
                throw Bad(path, $"model.vocab[\"{p.Name}\"]", "expected a non-negative integer id");
            vocab[p.Name] = id;
        }
        if (vocab.Count == 0) throw Bad(path, "model.vocab", "is empty");
        return vocab;
    }

    private static Dictionary<long, (int, int)> ReadMerges(JsonElement model, Dictionary<string, int> vocab, string path)
    {
        var merges = new Dictionary<long, (int, int)>();
        if (!model.TryGetProperty("merges", out var m) || m.ValueKind != JsonValueKind.Array) throw Bad(path, "model.merges", "missing or not an array");
        var rank = 0;
        foreach (var e in m.EnumerateArray())
        {
            string a, b;
            if (e.ValueKind == JsonValueKind.String)
            {
                // "a b": tokens never contain a plain space in byte-level vocabularies (space is 'Ġ').
                var parts = e.GetString()!.Split(' ');
                if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                    throw Bad(path, $"model.merges[{rank}]", $"'{e.GetString()}' is not \"left right\"");
                (a, b) = (parts[0], parts[1]);
            }
            else if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 2 && e[0].ValueKind == JsonValueKind.String && e[1].ValueKind == JsonValueKind.String)
            {
                a = e[0].GetString()!;
                b = e[1].GetString()!;
            }
            else throw Bad(path, $"model.merges[{rank}]", "expected \"left right\" or [left, right]");
            if (!vocab.TryGetValue(a, out var ia)) throw Bad(path, $"model.merges[{rank}]", $"'{a}' is not in model.vocab");
            if (!vocab.TryGetValue(b, out var ib)) throw Bad(path, $"model.merges[{rank}]", $"'{b}' is not in model.vocab");
            if (!vocab.TryGetValue(a + b, out var merged)) throw Bad(path, $"model.merges[{rank}]", $"the merged token '{a + b}' is not in model.vocab");
            // The first occurrence of a pair wins, as in tokenizers.
            merges.TryAdd(BytePairModel.PairKey(ia, ib), (rank, merged));
            rank++;
        }
        return merges;
    }

    private static List<AddedToken> ReadAddedTokens(JsonElement root, string path)
    {
        var list = new List<AddedToken>();
        if (!root.TryGetProperty("added_tokens", out var arr) || arr.ValueKind == JsonValueKind.Null) return list;
        if (arr.ValueKind != JsonValueKind.Array) throw Bad(path, "added_tokens", "expected an array");
        var i = 0;
        foreach (var e in arr.EnumerateArray())
        {
            var field = $"added_tokens[{i++}]";
            if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("id", out var id) || !id.TryGetInt32(out var idv) || idv < 0
                || !e.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String || c.GetString()!.Length == 0)
                throw Bad(path, field, "expected {\"id\": int, \"content\": non-empty string, …}");
            list.Add(new AddedToken(idv, c.GetString()!, Bool(e, "special", path, field + ".special"), Bool(e, "single_word", path, field + ".single_word"),
                Bool(e, "lstrip", path, field + ".lstrip"), Bool(e, "rstrip", path, field + ".rstrip"), Bool(e, "normalized", path, field + ".normalized")));
        }
        return list;
    }

    private static (List<RegexSplit>, bool) ReadPreTokenizer(JsonElement root, string path)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind == JsonValueKind.Null)
            throw Bad(path, "pre_tokenizer", "missing: only byte-level BPE tokenizers (a ByteLevel pre-tokenizer) are supported");
        var steps = new List<(JsonElement, string)>();
        if (TypeOf(pre) == "Sequence")
        {
            if (!pre.TryGetProperty("pretokenizers", out var seq) || seq.ValueKind != JsonValueKind.Array) throw Bad(path, "pre_tokenizer.pretokenizers", "missing");
            var i = 0;
            foreach (var s in seq.EnumerateArray()) steps.Add((s, $"pre_tokenizer.pretokenizers[{i++}]"));
        }
        else steps.Add((pre, "pre_tokenizer"));

        var splits = new List<RegexSplit>();
        var prefix = false;
        var byteLevelSeen = false;
        foreach (var (step, field) in steps)
        {
            if (byteLevelSeen) throw Bad(path, field, "a pre-tokenizer after ByteLevel is not supported");
            switch (TypeOf(step))
            {
                case "ByteLevel":
                    byteLevelSeen = true;
                    prefix = Bool(step, "add_prefix_space", path, field + ".add_prefix_space");
                    // use_regex defaults to true in tokenizers.
                    if (!step.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False)
                        splits.Add(new RegexSplit(RegexSplit.Gpt2Pattern, SplitBehavior.Isolated, invert: false));
                    break;
                case "Split":
                    splits.Add(ReadSplit(step, path, field));
                    break;
                default:
                    throw Bad(path, field + ".type", $"pre-tokenizer '{TypeOf(step)}' is not supported (supported: ByteLevel, Split, a Sequence of them)");
            }
        }
        if (!byteLevelSeen)
            throw Bad(path, "pre_tokenizer", "has no ByteLevel step: only byte-level BPE tokenizers are supported (Metaspace/SentencePiece ones such as Llama 2's are not)");
        return (splits, prefix);
    }

    private static RegexSplit ReadSplit(JsonElement step, string path, string field)
    {
        if (!step.TryGetProperty("pattern", out var pattern) || pattern.ValueKind != JsonValueKind.Object) throw Bad(path, field + ".pattern", "missing");
        string text;
        bool literal;
        if (pattern.TryGetProperty("Regex", out var rx) && rx.ValueKind == JsonValueKind.String) { text = rx.GetString()!; literal = false; }
        else if (pattern.TryGetProperty("String", out var str) && str.ValueKind == JsonValueKind.String) { text = str.GetString()!; literal = true; }
        else throw Bad(path, field + ".pattern", "expected {\"Regex\": …} or {\"String\": …}");
        var behaviorName = step.TryGetProperty("behavior", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "Isolated";
        if (!Enum.TryParse<SplitBehavior>(behaviorName, ignoreCase: false, out var behavior))
            throw Bad(path, field + ".behavior", $"'{behaviorName}' is not one of Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous");
        try { return new RegexSplit(text, behavior, Bool(step, "invert", path, field + ".invert"), literal); }
        catch (ArgumentException e) { throw Bad(path, field + ".pattern", $"the regex does not compile in .NET: {e.Message}"); }
    }

    private static void ReadDecoder(JsonElement root, string path)
    {
        if (!root.TryGetProperty("decoder", out var dec) || dec.ValueKind == JsonValueKind.Null) return;
        var type = TypeOf(dec);
        if (type != "ByteLevel")
            throw Bad(path, "decoder.type", $"'{type}' is not supported: byte-level BPE decodes with ByteLevel");
    }

    /// <summary>The first special token of the TemplateProcessing "single" template when it precedes the text (Llama 3
    /// adds &lt;|begin_of_text|&gt; this way).</summary>
    private static int? BosFromPostProcessor(JsonElement root, Dictionary<string, int> vocab, List<AddedToken> added)
    {
        if (!root.TryGetProperty("post_processor", out var pp) || pp.ValueKind != JsonValueKind.Object) return null;
        var templates = new List<JsonElement>();
        if (TypeOf(pp) == "TemplateProcessing") templates.Add(pp);
        else if (TypeOf(pp) == "Sequence" && pp.TryGetProperty("processors", out var procs) && procs.ValueKind == JsonValueKind.Array)
            templates.AddRange(procs.EnumerateArray().Where(p => TypeOf(p) == "TemplateProcessing"));
        foreach (var tp in templates)
        {
            if (!tp.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() == 0) continue;
            if (single[0].TryGetProperty("SpecialToken", out var st) && st.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String)
                return Lookup(id.GetString()!, vocab, added);
        }
        return null;
    }

    private static int? Lookup(string token, Dictionary<string, int> vocab, List<AddedToken> added)
    {
        foreach (var a in added) if (a.Content == token) return a.Id;
        return vocab.TryGetValue(token, out var id) ? id : null;
    }

    private static void ReadConfig(string configPath, Dictionary<string, int> vocab, List<AddedToken> added,
                                   ref int? bos, ref int? eos, ref int? pad, ref bool addsBos)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(configPath)); }
        catch (JsonException e) { throw new InvalidDataException($"{configPath}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad(configPath, "(root)", "expected a JSON object");
            int? Token(string name, int? fallback)
            {
                if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
                // A plain string, or an AddedToken object {"content": …} (older transformers).
                var content = v.ValueKind == JsonValueKind.String ? v.GetString()
                    : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
                    : throw Bad(configPath, name, "expected a token string or {\"content\": …}");
                return Lookup(content!, vocab, added) ?? throw Bad(configPath, name, $"'{content}' is not a token of tokenizer.json");
            }
            bos = Token("bos_token", bos);
            eos = Token("eos_token", eos);
            pad = Token("pad_token", pad);
            if (root.TryGetProperty("add_bos_token", out var ab))
                addsBos = ab.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    _ => throw Bad(configPath, "add_bos_token", "expected true or false"),
                };
        }
    }
}
