using System.IO.Compression;
using System.Text;

namespace SlothSharp.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> with a BPE model, giving the same ids as Hugging Face <c>tokenizers</c> for
/// byte-level BPE (Llama 3, Qwen 2/3, GPT-OSS, DeepSeek V3, GPT-2) and SentencePiece-style BPE with
/// <c>byte_fallback</c> (Llama 2, Mistral, Gemma). Encoding follows tokenizers' pipeline: added tokens with
/// <c>normalized: false</c> are found in the raw text; each piece between them is normalized (NFC/NFKC/NFD/NFKD,
/// Replace, Prepend, Strip, Lowercase, Sequence); added tokens with <c>normalized: true</c> are found in the
/// normalized text; the rest is pre-tokenized (Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace…) and
/// each pre-token is BPE-merged by rank (with ignore_merges, byte_fallback, unk_token/fuse_unk). Decoding runs the
/// decoder chain (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace). What encoding "with special tokens"
/// adds comes from tokenizer_config.json (add_bos_token/add_eos_token as transformers applies them) or the
/// post-processor. Thread-safe after construction.
/// <para>Text with lone UTF-16 surrogates (which Rust strings cannot hold: Python's tokenizers rejects such text)
/// is encoded as if each lone surrogate were U+FFFD, as .NET's UTF-8 encoder writes it.</para>
/// </summary>
public sealed class HfTokenizer
{
    private readonly BytePairModel _model;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly string?[] _idToToken;
    private readonly AddedToken?[] _idToAdded;
    private readonly AddedTokenMatcher _rawMatcher;
    private readonly AddedTokenMatcher _normalizedMatcher;
    private readonly TextNormalizer? _normalizer;
    private readonly PreTokenizerPipeline? _preTokenizer;
    private readonly TokenDecoder _decoder;
    private readonly int[] _specialPrefix;
    private readonly int[] _specialSuffix;

    /// <summary>The tokenizer.json this was read from (or the name given to <see cref="FromJson"/>/<see cref="FromStreams"/>).</summary>
    public string SourcePath { get; }
    public int? BosTokenId { get; }
    public int? EosTokenId { get; }
    public int? PadTokenId { get; }
    /// <summary>Largest id of the vocabulary or the added tokens, plus one (tokenizers' vocab size with added tokens).</summary>
    public int VocabSize { get; }
    /// <summary>Whether encoding with special tokens (<see cref="EncodeWithSpecialTokens"/>, transformers'
    /// add_special_tokens=True) puts BOS first. <see cref="Encode"/> adds it only when asked.</summary>
    public bool AddsBosByDefault { get; }
    /// <summary>The ids encoding with special tokens puts before the text (e.g. BOS).</summary>
    public IReadOnlyList<int> SpecialPrefixIds => _specialPrefix;
    /// <summary>The ids encoding with special tokens puts after the text (e.g. EOS with add_eos_token).</summary>
    public IReadOnlyList<int> SpecialSuffixIds => _specialSuffix;
    public int MergeCount => _model.MergeCount;
    /// <summary>Ids of the added tokens marked special (skipped by <see cref="Decode"/> by default).</summary>
    public IReadOnlySet<int> SpecialTokenIds { get; }

    private HfTokenizer(TokenizerParts p)
    {
        SourcePath = p.Source;
        _model = p.Model;
        _vocab = p.Vocab;
        _normalizer = p.Normalizer;
        _preTokenizer = p.PreTokenizer is { Count: > 0 } pre ? pre : null;
        _decoder = p.Decoder;
        _specialPrefix = p.SpecialPrefix;
        _specialSuffix = p.SpecialSuffix;
        var maxId = -1;
        foreach (var id in p.Vocab.Values) maxId = Math.Max(maxId, id);
        foreach (var a in p.Added) maxId = Math.Max(maxId, a.Id);
        VocabSize = maxId + 1;
        _idToToken = new string?[VocabSize];
        foreach (var (token, id) in p.Vocab) _idToToken[id] ??= token;
        _idToAdded = new AddedToken?[VocabSize];
        _addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        var special = new HashSet<int>();
        foreach (var a in p.Added)
        {
            _idToAdded[a.Id] = a;
            _addedByContent.TryAdd(a.Content, a);
            if (a.Special) special.Add(a.Id);
        }
        SpecialTokenIds = special;
        _rawMatcher = new AddedTokenMatcher(p.Added.Where(a => !a.Normalized));
        _normalizedMatcher = new AddedTokenMatcher(p.Added.Where(a => a.Normalized));
        BosTokenId = p.Bos;
        EosTokenId = p.Eos;
        PadTokenId = p.Pad;
        AddsBosByDefault = p.Bos is { } bos && p.SpecialPrefix.Contains(bos);
    }

    /// <summary>Reads <c>tokenizer.json</c> (required) and <c>tokenizer_config.json</c> (optional) of a model directory.</summary>
    public static HfTokenizer FromDirectory(string modelDir)
    {
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"{modelDir}: model directory not found");
        var json = Path.Combine(modelDir, "tokenizer.json");
        if (!File.Exists(json))
            throw new FileNotFoundException($"{json}: not found (the model directory needs a Hugging Face tokenizer.json)", json);
        var config = Path.Combine(modelDir, "tokenizer_config.json");
        using var j = OpenMaybeGzip(json);
        using var c = File.Exists(config) ? File.OpenRead(config) : null;
        return new HfTokenizer(TokenizerJsonReader.Read(j, json, c, c is null ? null : config));
    }

    /// <summary>Reads one tokenizer.json (or tokenizer.json.gz); BOS comes from its post-processor, EOS/PAD stay unknown.</summary>
    public static HfTokenizer FromFile(string tokenizerJson, string? tokenizerConfigJson = null)
    {
        if (!File.Exists(tokenizerJson)) throw new FileNotFoundException($"{tokenizerJson}: not found", tokenizerJson);
        if (tokenizerConfigJson is not null && !File.Exists(tokenizerConfigJson))
            throw new FileNotFoundException($"{tokenizerConfigJson}: not found", tokenizerConfigJson);
        using var j = OpenMaybeGzip(tokenizerJson);
        using var c = tokenizerConfigJson is null ? null : File.OpenRead(tokenizerConfigJson);
        return new HfTokenizer(TokenizerJsonReader.Read(j, tokenizerJson, c, tokenizerConfigJson));
    }

    /// <summary>From the text of a tokenizer.json (and optionally of its tokenizer_config.json); <paramref name="sourceName"/>
    /// names it in errors.</summary>
    public static HfTokenizer FromJson(string tokenizerJson, string? tokenizerConfigJson = null, string sourceName = "tokenizer.json")
    {
        ArgumentNullException.ThrowIfNull(tokenizerJson);
        using var j = new MemoryStream(Encoding.UTF8.GetBytes(tokenizerJson));
        using var c = tokenizerConfigJson is null ? null : new MemoryStream(Encoding.UTF8.GetBytes(tokenizerConfigJson));
        return new HfTokenizer(TokenizerJsonReader.Read(j, sourceName, c, c is null ? null : "tokenizer_config.json"));
    }

    /// <summary>From streams of UTF-8 JSON (e.g. a <see cref="GZipStream"/>); <paramref name="sourceName"/> names the
    /// tokenizer.json in errors.</summary>
    public static HfTokenizer FromStreams(Stream tokenizerJson, Stream? tokenizerConfigJson = null, string sourceName = "tokenizer.json")
    {
        ArgumentNullException.ThrowIfNull(tokenizerJson);
        return new HfTokenizer(TokenizerJsonReader.Read(tokenizerJson, sourceName, tokenizerConfigJson,
            tokenizerConfigJson is null ? null : "tokenizer_config.json"));
    }

    private static Stream OpenMaybeGzip(string path)
    {
        var file = File.OpenRead(path);
        return path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    /// <summary>Token ids of <paramref name="text"/>, with BOS first when <paramref name="addBos"/> (and BOS is
    /// known). Special tokens written in the text (e.g. "&lt;|eot_id|&gt;") become their ids, as in Hugging Face.</summary>
    public int[] Encode(string text, bool addBos = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos)
        {
            if (BosTokenId is not { } bos)
                throw new InvalidOperationException($"{SourcePath}: no BOS token is known (bos_token in tokenizer_config.json)");
            ids.Add(bos);
        }
        EncodeInto(text, ids);
        return ids.ToArray();
    }

    /// <summary>Token ids as transformers gives them with add_special_tokens=True: <see cref="SpecialPrefixIds"/>,
    /// the text's ids, <see cref="SpecialSuffixIds"/>.</summary>
    public int[] EncodeWithSpecialTokens(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2 + _specialPrefix.Length + _specialSuffix.Length);
        ids.AddRange(_specialPrefix);
        EncodeInto(text, ids);
        ids.AddRange(_specialSuffix);
        return ids.ToArray();
    }

    /// <summary>The ids of many documents, encoded in parallel (one document per work item); the result is in the
    /// order of <paramref name="texts"/>. <paramref name="maxDegreeOfParallelism"/>: -1 for all cores.</summary>
    public int[][] EncodeBatch(IReadOnlyList<string> texts, bool addSpecialTokens = false, int maxDegreeOfParallelism = -1)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var result = new int[texts.Count][];
        Parallel.For(0, texts.Count, new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism },
            i => result[i] = addSpecialTokens ? EncodeWithSpecialTokens(texts[i]) : Encode(texts[i]));
        return result;
    }

    private void EncodeInto(string text, List<int> ids)
    {
        text = ReplaceLoneSurrogates(text);
        var raw = new List<(int Start, int End, AddedToken? Token)>();
        var normalizedParts = new List<(int Start, int End, AddedToken? Token)>();
        var pieces = new List<Piece>();
        var scratch = new List<Piece>();
        _rawMatcher.Split(text, raw);
        foreach (var (start, end, token) in raw)
        {
            if (token is not null) { ids.Add(token.Id); continue; }
            if (_normalizer is null && _normalizedMatcher.IsEmpty)
            {
                PreTokenizeAndEncode(text.AsMemory(start, end - start), start == 0, ids, pieces, scratch);
                continue;
            }
            var normalized = _normalizer is null ? text[start..end] : _normalizer.Normalize(text[start..end]);
            _normalizedMatcher.Split(normalized, normalizedParts);
            foreach (var (s, e, t) in normalizedParts)
            {
                if (t is not null) { ids.Add(t.Id); continue; }
                PreTokenizeAndEncode(normalized.AsMemory(s, e - s), start == 0 && s == 0, ids, pieces, scratch);
            }
        }
    }

    private void PreTokenizeAndEncode(ReadOnlyMemory<char> text, bool atStart, List<int> ids, List<Piece> pieces, List<Piece> scratch)
    {
        if (_preTokenizer is null) { _model.EncodeWord(text.Span, ids); return; }
        _preTokenizer.Run(text, atStart, pieces, scratch);
        foreach (var p in pieces) _model.EncodeWord(p.Text.Span, ids);
    }

    /// <summary>The text with each lone UTF-16 surrogate replaced by U+FFFD (the same string when there is none).</summary>
    internal static string ReplaceLoneSurrogates(string text)
    {
        var bad = -1;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            bad = i;
            break;
        }
        if (bad < 0) return text;
        var chars = text.ToCharArray();
        for (var i = bad; i < chars.Length; i++)
        {
            var c = chars[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < chars.Length && char.IsLowSurrogate(chars[i + 1])) { i++; continue; }
            chars[i] = '\uFFFD';
        }
        return new string(chars);
    }

    /// <summary>Text of <paramref name="ids"/>, as tokenizers' decode: the tokens' strings through the decoder chain
    /// (ByteLevel bytes or byte_fallback bytes read as UTF-8, invalid sequences as U+FFFD). Never throws: an unknown
    /// id becomes U+FFFD (tokenizers would drop it). Special tokens are left out unless
    /// <paramref name="skipSpecialTokens"/> is false.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (var id in ids)
        {
            if (skipSpecialTokens && (uint)id < (uint)_idToAdded.Length && _idToAdded[id] is { Special: true }) continue;
            tokens.Add(IdToToken(id) ?? "\uFFFD");
        }
        if (tokens.Count == 0) return "";
        _decoder.DecodeChain(tokens);
        return string.Concat(tokens);
    }

    /// <summary>The token string of an id (byte-level form for vocabulary tokens), or null.</summary>
    public string? IdToToken(int id)
    {
        if ((uint)id >= (uint)_idToToken.Length) return null;
        return _idToAdded[id]?.Content ?? _idToToken[id];
    }

    /// <summary>The id of a token string (vocabulary or added token), or null.</summary>
    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out var a) ? a.Id : _vocab.TryGetValue(token, out var id) ? id : null;

    /// <summary>The UTF-8 bytes of one token for streaming (<paramref name="first"/>: it is the first token of the
    /// text, which some decoders treat differently, e.g. Llama 2 drops its leading space).</summary>
    /// <returns>false when the token was skipped (a special token with <paramref name="skipSpecialTokens"/>).</returns>
    internal bool AppendTokenBytes(int id, bool skipSpecialTokens, List<byte> output, bool first = false)
    {
        if (skipSpecialTokens && (uint)id < (uint)_idToAdded.Length && _idToAdded[id] is { Special: true }) return false;
        var token = IdToToken(id) ?? "\uFFFD";
        output.AddRange(_decoder.TokenBytes(Encoding.UTF8.GetBytes(token), first));
        return true;
    }
}
