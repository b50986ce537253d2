using System.Text;
using System.Text.Json;

namespace SlothSharp.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> with a byte-level BPE model (Llama 3, Llama 3.1/3.2, GPT-2 style), giving the
/// same ids as Hugging Face <c>tokenizers</c>: added/special tokens are found in the raw text first, the rest is split
/// by the pre-tokenizer (<c>Sequence[Split(regex), ByteLevel]</c> or <c>ByteLevel</c> with its GPT-2 regex), mapped
/// byte-level, and BPE-merged by rank (with <c>ignore_merges</c> as Llama 3 sets it). Decoding maps characters back
/// to bytes and reads them as UTF-8. BOS/EOS/PAD come from <c>tokenizer_config.json</c> when present.
/// SentencePiece-style tokenizers (Llama 2: <c>Metaspace</c>, <c>byte_fallback</c>, Unigram) are rejected with an
/// error naming the field. Thread-safe after construction.
/// </summary>
public sealed class HfTokenizer
{
    private readonly BytePairModel _model;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<int, string> _idToToken;
    private readonly Dictionary<int, AddedToken> _added;
    private readonly AddedTokenMatcher _matcher;
    private readonly List<RegexSplit> _splits;
    private readonly bool _addPrefixSpace;

    /// <summary>The tokenizer.json this was read from.</summary>
    public string SourcePath { get; }
    public int? BosTokenId { get; }
    public int? EosTokenId { get; }
    public int? PadTokenId { get; }
    /// <summary>Largest id of the vocabulary or the added tokens, plus one (tokenizers' vocab size with added tokens).</summary>
    public int VocabSize { get; }
    /// <summary>Whether Hugging Face adds BOS when encoding with special tokens (tokenizer_config's add_bos_token,
    /// else the post-processor's template). <see cref="Encode"/> adds it only when asked.</summary>
    public bool AddsBosByDefault { get; }
    public int MergeCount => _model.MergeCount;
    /// <summary>Ids of the added tokens marked special (skipped by <see cref="Decode"/> by default).</summary>
    public IReadOnlySet<int> SpecialTokenIds { get; }

    private HfTokenizer(string path, BytePairModel model, Dictionary<string, int> vocab, List<AddedToken> added,
                        List<RegexSplit> splits, bool addPrefixSpace, int? bos, int? eos, int? pad, bool addsBos)
    {
        SourcePath = path;
        _model = model;
        _vocab = vocab;
        _idToToken = new Dictionary<int, string>(vocab.Count);
        foreach (var (token, id) in vocab) _idToToken.TryAdd(id, token);
        _added = new Dictionary<int, AddedToken>();
        foreach (var a in added) _added[a.Id] = a;
        _matcher = new AddedTokenMatcher(added);
        _splits = splits;
        _addPrefixSpace = addPrefixSpace;
        BosTokenId = bos;
        EosTokenId = eos;
        PadTokenId = pad;
        AddsBosByDefault = addsBos;
        VocabSize = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);
        SpecialTokenIds = added.Where(a => a.Special).Select(a => a.Id).ToHashSet();
    }

    /// <summary>Reads <c>tokenizer.json</c> (required) and <c>tokenizer_config.json</c> (optional) of a model directory.</summary>
    public static HfTokenizer FromDirectory(string modelDir)
    {
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"{modelDir}: model directory not found");
        var json = Path.Combine(modelDir, "tokenizer.json");
        if (!File.Exists(json))
            throw new FileNotFoundException($"{json}: not found (the model directory needs a Hugging Face tokenizer.json)", json);
        var config = Path.Combine(modelDir, "tokenizer_config.json");
        return Load(json, File.Exists(config) ? config : null);
    }

    /// <summary>Reads one tokenizer.json; BOS comes from its post-processor, EOS/PAD stay unknown.</summary>
    public static HfTokenizer FromFile(string tokenizerJson)
    {
        if (!File.Exists(tokenizerJson)) throw new FileNotFoundException($"{tokenizerJson}: not found", tokenizerJson);
        return Load(tokenizerJson, null);
    }

    private static HfTokenizer Load(string path, string? configPath) => TokenizerJsonReader.Read(path, configPath,
        (model, vocab, added, splits, prefix, bos, eos, pad, addsBos) =>
            new HfTokenizer(path, model, vocab, added, splits, prefix, bos, eos, pad, addsBos));

    /// <summary>Token ids of <paramref name="text"/>, with BOS first when <paramref name="addBos"/> (and BOS is
    /// known). Special tokens written in the text (e.g. "&lt;|eot_id|&gt;") become their ids, as in Hugging Face.
    /// Lone UTF-16 surrogates are encoded as U+FFFD.</summary>
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
        var pieces = new List<string>();
        foreach (var (segment, token) in _matcher.Split(text))
        {
            if (token is not null) { ids.Add(token.Id); continue; }
            pieces.Clear();
            pieces.Add(_addPrefixSpace && !segment.StartsWith(' ') ? " " + segment : segment);
            foreach (var split in _splits)
            {
                var next = new List<string>();
                foreach (var p in pieces) split.Split(p, next);
                pieces = next;
            }
            foreach (var p in pieces) _model.EncodeWord(ByteLevel.Encode(p), ids);
        }
        return ids.ToArray();
    }

    /// <summary>Text of <paramref name="ids"/>: byte-level tokens back to bytes, read as UTF-8 (invalid or incomplete
    /// sequences and unknown ids become U+FFFD; never throws). Special tokens are left out unless
    /// <paramref name="skipSpecialTokens"/> is false.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (var id in ids) AppendTokenBytes(id, skipSpecialTokens, bytes);
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>The token string of an id (byte-level form for vocabulary tokens), or null.</summary>
    public string? IdToToken(int id) => _added.TryGetValue(id, out var a) ? a.Content : _idToToken.GetValueOrDefault(id);

    /// <summary>The id of a token string (vocabulary or added token), or null.</summary>
    public int? TokenToId(string token)
    {
        foreach (var a in _added.Values) if (a.Content == token) return a.Id;
        return _vocab.TryGetValue(token, out var id) ? id : null;
    }

    private static readonly byte[] ReplacementUtf8 = [0xEF, 0xBF, 0xBD];

    internal void AppendTokenBytes(int id, bool skipSpecialTokens, List<byte> output)
    {
        if (_added.TryGetValue(id, out var added))
        {
            if (!(skipSpecialTokens && added.Special)) output.AddRange(Encoding.UTF8.GetBytes(added.Content));
            return;
        }
        if (!_idToToken.TryGetValue(id, out var token)) { output.AddRange(ReplacementUtf8); return; }
        var start = output.Count;
        foreach (var c in token)
        {
            if (ByteLevel.TryCharToByte(c, out var b)) { output.Add(b); continue; }
            // Not a byte-level string (as tokenizers' ByteLevel decoder does): the token's own UTF-8 bytes.
            output.RemoveRange(start, output.Count - start);
            output.AddRange(Encoding.UTF8.GetBytes(token));
            return;
        }
    }
}
