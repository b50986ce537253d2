using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace SlothSharp.Tokenization;

/// <summary>Everything <see cref="HfTokenizer"/> is built from.</summary>
internal sealed record TokenizerParts(
    string Source,
    BytePairModel Model,
    Dictionary<string, int> Vocab,
    List<AddedToken> Added,
    TextNormalizer? Normalizer,
    PreTokenizerPipeline? PreTokenizer,
    TokenDecoder Decoder,
    int[] SpecialPrefix,
    int[] SpecialSuffix,
    int? Bos,
    int? Eos,
    int? Pad);

/// <summary>Parses tokenizer.json / tokenizer_config.json into the parts of <see cref="HfTokenizer"/>; every
/// unsupported or malformed field is an <see cref="InvalidDataException"/> naming the file and the field.</summary>
internal static class TokenizerJsonReader
{
    private static InvalidDataException Bad(string path, string field, string message) => new($"{path}: {field}: {message}");

    /// <summary>tokenizer_config.json classes whose transformers tokenizer rebuilds the post-processor from
    /// add_bos_token (default true) and add_eos_token (default false), ignoring tokenizer.json's.</summary>
    private static readonly HashSet<string> BosEosClasses = new(StringComparer.Ordinal)
    {
        "LlamaTokenizer", "LlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast",
    };

    public static JsonDocument Parse(Stream stream, string path)
    {
        try { return JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
    }

    public static TokenizerParts Read(Stream tokenizerJson, string path, Stream? config, string? configPath)
    {
        using var doc = Parse(tokenizerJson, path);
        using var configDoc = config is null ? null : Parse(config, configPath ?? "tokenizer_config.json");
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw Bad(path, "(root)", "expected a JSON object");
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw Bad(path, "model", "missing");
        var type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        // tokenizers omits "type" for BPE in some older files; the presence of merges identifies it.
        if (type is null && model.TryGetProperty("merges", out _)) type = "BPE";
        if (type != "BPE")
            throw Bad(path, "model.type", $"'{type ?? "(none)"}' is not supported: only BPE models are (byte-level such as Llama 3, Qwen, " +
                                          "GPT-OSS, DeepSeek; SentencePiece-style with byte_fallback such as Llama 2, Gemma, Mistral); " +
                                          "Unigram/WordPiece/WordLevel models are not");
        foreach (var f in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(f, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0)
                throw Bad(path, $"model.{f}", "a non-empty value is not supported");
        if (model.TryGetProperty("dropout", out var dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() > 0)
            throw Bad(path, "model.dropout", "BPE dropout is not supported (it makes encoding random)");

        var vocab = ReadVocab(model, path);
        var added = ReadAddedTokens(root, path);
        var merges = ReadMerges(model, vocab, path);
        int? unk = null;
        if (model.TryGetProperty("unk_token", out var unkTok) && unkTok.ValueKind == JsonValueKind.String)
            unk = vocab.TryGetValue(unkTok.GetString()!, out var u) ? u : throw Bad(path, "model.unk_token", $"'{unkTok.GetString()}' is not in model.vocab");

        var normalizer = root.TryGetProperty("normalizer", out var norm) ? ReadNormalizer(norm, path, "normalizer") : null;
        var (pre, byteLevel) = root.TryGetProperty("pre_tokenizer", out var preJson) ? ReadPreTokenizer(preJson, path) : (null, false);
        var decoder = root.TryGetProperty("decoder", out var dec) && dec.ValueKind != JsonValueKind.Null ? ReadDecoder(dec, path, "decoder") : new NoDecoder();
        var bpe = new BytePairModel(vocab, merges, Bool(model, "ignore_merges", path, "model.ignore_merges"), unk,
            Bool(model, "fuse_unk", path, "model.fuse_unk"), Bool(model, "byte_fallback", path, "model.byte_fallback"), byteLevel);

        var (prefix, suffix) = root.TryGetProperty("post_processor", out var pp) ? ReadPostProcessor(pp, path, "post_processor", vocab, added) : ([], []);
        int? bos = prefix.Length > 0 ? prefix[0] : null, eos = null, pad = null;
        if (configDoc is not null)
            ApplyConfig(configDoc.RootElement, configPath ?? "tokenizer_config.json", vocab, added, ref bos, ref eos, ref pad, ref prefix, ref suffix);
        return new TokenizerParts(path, bpe, vocab, added, normalizer, pre, decoder, prefix, suffix, bos, eos, pad);
    }

    private static bool Bool(JsonElement obj, string name, string path, string field, bool fallback = false)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(path, field, "expected true or false"),
        };
    }

    private static string String(JsonElement obj, string name, string path, string field, string? fallback = null)
    {
        if (obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String) return v.GetString()!;
        return fallback ?? throw Bad(path, field, "missing or not a string");
    }

    private static int Int(JsonElement obj, string name, string path, string field, int fallback)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) && i >= 0 ? i : throw Bad(path, field, "expected a non-negative integer");
    }

    private static char Char(JsonElement obj, string name, string path, string field, char fallback)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        var s = v.ValueKind == JsonValueKind.String ? v.GetString()! : "";
        return s.Length == 1 ? s[0] : throw Bad(path, field, "expected a single (BMP) character");
    }

    private static string TypeOf(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : e.ValueKind.ToString();

    private static IEnumerable<(JsonElement Item, string Field)> Items(JsonElement obj, string name, string path, string field)
    {
        if (!obj.TryGetProperty(name, out var arr) || arr.ValueKind != JsonValueKind.Array) throw Bad(path, $"{field}.{name}", "missing or not an array");
        var i = 0;
        foreach (var e in arr.EnumerateArray()) yield return (e, $"{field}.{name}[{i++}]");
    }

    /// <summary>A Replace/Split <c>pattern</c>: {"String": …} (literal) or {"Regex": …}.</summary>
    private static (string? Literal, Regex? Regex, string Text, bool IsLiteral) Pattern(JsonElement obj, string path, string field)
    {
        if (!obj.TryGetProperty("pattern", out var pattern) || pattern.ValueKind != JsonValueKind.Object) throw Bad(path, field + ".pattern", "missing");
        if (pattern.TryGetProperty("String", out var str) && str.ValueKind == JsonValueKind.String) return (str.GetString()!, null, str.GetString()!, true);
        if (pattern.TryGetProperty("Regex", out var rx) && rx.ValueKind == JsonValueKind.String)
        {
            try { return (null, new Regex(rx.GetString()!, RegexOptions.CultureInvariant | RegexOptions.Compiled), rx.GetString()!, false); }
            catch (ArgumentException e) { throw Bad(path, field + ".pattern", $"the regex does not compile in .NET: {e.Message}"); }
        }
        throw Bad(path, field + ".pattern", "expected {\"Regex\": …} or {\"String\": …}");
    }

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
                // "a b" (older files): tokens never hold a plain space there (byte-level 'Ġ', SentencePiece '▁').
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

    private static TextNormalizer? ReadNormalizer(JsonElement n, string path, string field)
    {
        if (n.ValueKind == JsonValueKind.Null) return null;
        switch (TypeOf(n))
        {
            case "NFC": return new UnicodeNormalizer(NormalizationForm.FormC);
            case "NFD": return new UnicodeNormalizer(NormalizationForm.FormD);
            case "NFKC": return new UnicodeNormalizer(NormalizationForm.FormKC);
            case "NFKD": return new UnicodeNormalizer(NormalizationForm.FormKD);
            case "Lowercase": return new LowercaseNormalizer();
            case "Prepend": return new PrependNormalizer(String(n, "prepend", path, field + ".prepend"));
            case "Strip": return new StripNormalizer(Bool(n, "strip_left", path, field + ".strip_left", true), Bool(n, "strip_right", path, field + ".strip_right", true));
            case "Replace":
            {
                var (literal, regex, _, _) = Pattern(n, path, field);
                return new ReplaceNormalizer(literal, regex, String(n, "content", path, field + ".content"));
            }
            case "Sequence":
            {
                var steps = new List<TextNormalizer>();
                foreach (var (item, f) in Items(n, "normalizers", path, field)) if (ReadNormalizer(item, path, f) is { } s) steps.Add(s);
                return steps.Count == 0 ? null : steps.Count == 1 ? steps[0] : new SequenceNormalizer(steps.ToArray());
            }
            default:
                throw Bad(path, field + ".type", $"normalizer '{TypeOf(n)}' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Strip, Replace, Sequence)");
        }
    }

    /// <summary>The pre-tokenizer steps, and whether a ByteLevel step maps the pieces to byte characters.</summary>
    private static (PreTokenizerPipeline?, bool) ReadPreTokenizer(JsonElement pre, string path)
    {
        if (pre.ValueKind == JsonValueKind.Null) return (null, false);
        var steps = new List<PreTokenizerStep>();
        var byteLevel = false;
        void Add(JsonElement step, string field)
        {
            if (byteLevel) throw Bad(path, field, "a pre-tokenizer after ByteLevel is not supported");
            switch (TypeOf(step))
            {
                case "Sequence":
                    foreach (var (item, f) in Items(step, "pretokenizers", path, field)) Add(item, f);
                    break;
                case "ByteLevel":
                {
                    byteLevel = true;
                    // use_regex defaults to true in tokenizers. Without a prefix space or a regex the step only marks the
                    // pieces for byte mapping (done by the model), so it is left out of the pipeline.
                    var prefixSpace = Bool(step, "add_prefix_space", path, field + ".add_prefix_space");
                    var useRegex = Bool(step, "use_regex", path, field + ".use_regex", true);
                    if (prefixSpace || useRegex) steps.Add(new ByteLevelStep(prefixSpace, useRegex));
                    break;
                }
                case "Split":
                {
                    var (_, _, text, literal) = Pattern(step, path, field);
                    var behavior = Behavior(step, path, field);
                    try { steps.Add(new SplitStep(new RegexSplit(text, behavior, Bool(step, "invert", path, field + ".invert"), literal))); }
                    catch (ArgumentException e) { throw Bad(path, field + ".pattern", $"the regex does not compile in .NET: {e.Message}"); }
                    break;
                }
                case "Metaspace":
                {
                    var replacement = Char(step, "replacement", path, field + ".replacement", '\u2581');
                    PrependScheme scheme;
                    if (step.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String)
                        scheme = ps.GetString() switch
                        {
                            "first" => PrependScheme.First,
                            "always" => PrependScheme.Always,
                            "never" => PrependScheme.Never,
                            var other => throw Bad(path, field + ".prepend_scheme", $"'{other}' is not one of first, always, never"),
                        };
                    else scheme = Bool(step, "add_prefix_space", path, field + ".add_prefix_space", true) ? PrependScheme.Always : PrependScheme.Never;
                    steps.Add(new MetaspaceStep(replacement, scheme, Bool(step, "split", path, field + ".split", true)));
                    break;
                }
                case "Digits":
                    steps.Add(new CharClassStep(CharClassStep.IsNumeric,
                        Bool(step, "individual_digits", path, field + ".individual_digits") ? SplitBehavior.Isolated : SplitBehavior.Contiguous));
                    break;
                case "Punctuation":
                    steps.Add(new CharClassStep(CharClassStep.IsPunctuation, Behavior(step, path, field)));
                    break;
                case "WhitespaceSplit":
                    steps.Add(new CharClassStep(CharClassStep.IsWhiteSpace, SplitBehavior.Removed));
                    break;
                case "Whitespace":
                    steps.Add(new WhitespaceStep());
                    break;
                case "BertPreTokenizer":
                    steps.Add(new CharClassStep(CharClassStep.IsWhiteSpace, SplitBehavior.Removed));
                    steps.Add(new CharClassStep(CharClassStep.IsPunctuation, SplitBehavior.Isolated));
                    break;
                case "CharDelimiterSplit":
                {
                    var delimiter = Char(step, "delimiter", path, field + ".delimiter", ' ');
                    steps.Add(new CharClassStep(r => r.Value == delimiter, SplitBehavior.Removed));
                    break;
                }
                default:
                    throw Bad(path, field + ".type", $"pre-tokenizer '{TypeOf(step)}' is not supported (supported: ByteLevel, Split, Metaspace, Digits, " +
                                                     "Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer, CharDelimiterSplit, Sequence)");
            }
        }
        Add(pre, "pre_tokenizer");
        return (new PreTokenizerPipeline(steps.ToArray()), byteLevel);
    }

    private static SplitBehavior Behavior(JsonElement step, string path, string field)
    {
        var name = String(step, "behavior", path, field + ".behavior", "Isolated");
        return Enum.TryParse<SplitBehavior>(name, ignoreCase: false, out var b) && Enum.IsDefined(b) ? b
            : throw Bad(path, field + ".behavior", $"'{name}' is not one of Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous");
    }

    private static TokenDecoder ReadDecoder(JsonElement d, string path, string field)
    {
        switch (TypeOf(d))
        {
            case "ByteLevel": return new ByteLevelDecoder();
            case "ByteFallback": return new ByteFallbackDecoder();
            case "Fuse": return new FuseDecoder();
            case "Replace":
            {
                var (literal, regex, _, _) = Pattern(d, path, field);
                return new ReplaceDecoder(literal, regex, String(d, "content", path, field + ".content"));
            }
            case "Strip":
                return new StripDecoder(Char(d, "content", path, field + ".content", ' '), Int(d, "start", path, field + ".start", 0), Int(d, "stop", path, field + ".stop", 0));
            case "Metaspace":
            {
                var replacement = Char(d, "replacement", path, field + ".replacement", '\u2581');
                var scheme = d.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String
                    ? (ps.GetString() == "never" ? PrependScheme.Never : ps.GetString() == "first" ? PrependScheme.First : PrependScheme.Always)
                    : Bool(d, "add_prefix_space", path, field + ".add_prefix_space", true) ? PrependScheme.Always : PrependScheme.Never;
                return new MetaspaceDecoder(replacement, scheme);
            }
            case "Sequence":
                return new SequenceDecoder(Items(d, "decoders", path, field).Select(x => ReadDecoder(x.Item, path, x.Field)).ToArray());
            default:
                throw Bad(path, field + ".type", $"decoder '{TypeOf(d)}' is not supported (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, Sequence)");
        }
    }

    /// <summary>The ids a post-processor puts before and after a single sequence.</summary>
    private static (int[], int[]) ReadPostProcessor(JsonElement pp, string path, string field, Dictionary<string, int> vocab, List<AddedToken> added)
    {
        if (pp.ValueKind == JsonValueKind.Null) return ([], []);
        switch (TypeOf(pp))
        {
            case "ByteLevel": return ([], []);  // only trims offsets
            case "TemplateProcessing":
            {
                var ids = new Dictionary<string, int[]>(StringComparer.Ordinal);
                if (pp.TryGetProperty("special_tokens", out var st) && st.ValueKind == JsonValueKind.Object)
                    foreach (var p in st.EnumerateObject())
                    {
                        if (!p.Value.TryGetProperty("ids", out var arr) || arr.ValueKind != JsonValueKind.Array)
                            throw Bad(path, $"{field}.special_tokens[\"{p.Name}\"].ids", "missing or not an array");
                        ids[p.Name] = arr.EnumerateArray().Select(x => x.TryGetInt32(out var v) ? v
                            : throw Bad(path, $"{field}.special_tokens[\"{p.Name}\"].ids", "expected integers")).ToArray();
                    }
                var prefix = new List<int>();
                var suffix = new List<int>();
                var seenSequence = false;
                foreach (var (item, f) in Items(pp, "single", path, field))
                {
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    if (!item.TryGetProperty("SpecialToken", out var special) || !special.TryGetProperty("id", out var sid) || sid.ValueKind != JsonValueKind.String)
                        throw Bad(path, f, "expected {\"SpecialToken\": {\"id\": …}} or {\"Sequence\": …}");
                    var name = sid.GetString()!;
                    var tokenIds = ids.TryGetValue(name, out var known) ? known
                        : Lookup(name, vocab, added) is { } one ? [one] : throw Bad(path, f, $"special token '{name}' is not in {field}.special_tokens");
                    (seenSequence ? suffix : prefix).AddRange(tokenIds);
                }
                return (prefix.ToArray(), suffix.ToArray());
            }
            case "RobertaProcessing":
            case "BertProcessing":
            {
                int Token(string name)
                {
                    if (!pp.TryGetProperty(name, out var pair) || pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2 || !pair[1].TryGetInt32(out var id))
                        throw Bad(path, $"{field}.{name}", "expected [token, id]");
                    return id;
                }
                return ([Token("cls")], [Token("sep")]);
            }
            case "Sequence":
            {
                // Each processor wraps the output of the previous one.
                var prefix = new List<int>();
                var suffix = new List<int>();
                foreach (var (item, f) in Items(pp, "processors", path, field))
                {
                    var (p, s) = ReadPostProcessor(item, path, f, vocab, added);
                    prefix.InsertRange(0, p);
                    suffix.AddRange(s);
                }
                return (prefix.ToArray(), suffix.ToArray());
            }
            default:
                throw Bad(path, field + ".type", $"post-processor '{TypeOf(pp)}' is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)");
        }
    }

    internal static int? Lookup(string token, Dictionary<string, int> vocab, List<AddedToken> added)
    {
        foreach (var a in added) if (a.Content == token) return a.Id;
        return vocab.TryGetValue(token, out var id) ? id : null;
    }

    /// <summary>BOS/EOS/PAD, and what transformers' tokenizer adds "with special tokens": classes such as
    /// LlamaTokenizer(Fast)/GemmaTokenizer(Fast), or any config that sets add_bos_token/add_eos_token, get
    /// [BOS if add_bos_token] text [EOS if add_eos_token]; otherwise tokenizer.json's post-processor decides.</summary>
    private static void ApplyConfig(JsonElement root, string configPath, Dictionary<string, int> vocab, List<AddedToken> added,
                                    ref int? bos, ref int? eos, ref int? pad, ref int[] prefix, ref int[] suffix)
    {
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
        bool? Flag(string name) => !root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null : v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(configPath, name, "expected true or false"),
        };
        var hasBosKey = root.TryGetProperty("bos_token", out _);
        bos = Token("bos_token", hasBosKey ? null : bos);
        eos = Token("eos_token", eos);
        pad = Token("pad_token", pad);
        var addBos = Flag("add_bos_token");
        var addEos = Flag("add_eos_token");
        var cls = root.TryGetProperty("tokenizer_class", out var tc) && tc.ValueKind == JsonValueKind.String ? tc.GetString()! : "";
        if (addBos is null && addEos is null && !BosEosClasses.Contains(cls)) return;
        prefix = (addBos ?? BosEosClasses.Contains(cls)) && bos is { } b ? [b] : [];
        suffix = (addEos ?? false) && eos is { } e ? [e] : [];
    }
}
