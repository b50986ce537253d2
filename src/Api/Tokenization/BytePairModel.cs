using System.Buffers;
using System.Collections.Concurrent;
using System.Text;

namespace SlothSharp.Tokenization;

/// <summary>
/// The BPE model of a tokenizer.json: vocabulary and ranked merges. A word (one pre-token) starts as one symbol per
/// character (per code point; with a byte-level pre-tokenizer the word is first mapped to GPT-2's byte characters);
/// then, as Hugging Face <c>tokenizers</c> does, the adjacent pair with the lowest merge rank is merged (ties: leftmost
/// first) until no pair has a merge. With <c>ignore_merges</c> (Llama 3) a word that is itself in the vocabulary is
/// one token. A character outside the vocabulary becomes its UTF-8 bytes as <c>&lt;0xNN&gt;</c> tokens with
/// <c>byte_fallback</c> (Llama 2, Gemma), else the unknown token (consecutive ones fused into one with
/// <c>fuse_unk</c>), else nothing. Results for short words are cached (pre-token text → ids); the cache is
/// lock-free for readers and is emptied when it grows past a limit.
/// </summary>
internal sealed class BytePairModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly bool _ignoreMerges;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly int[]? _byteFallbackIds;
    private readonly bool _byteLevel;
    // Vocabulary ids of single BMP characters (-1: not a token): the first step of every word looks each character
    // up, and an array read is several times cheaper than hashing a one-char span.
    private readonly int[] _charIds;
    // SentencePiece-style vocabularies (no pre-tokenizer: a whole text is one word) mark word starts with '▁'. A text
    // can be cut before a '▁' wherever no token contains the preceding character followed by '▁': no merge can
    // cross such a cut, so the pieces' BPE results, concatenated, are the whole text's, and the pieces are short and
    // repeat (the word cache serves them). Null when the cut does not apply (byte-level or ignore_merges models, or
    // no '▁' token). Else: the characters after which a '▁' may belong to the same token (never cut there).
    private const char Metaspace = '\u2581';
    private readonly bool[]? _joinsMetaspace;
    // One merge queue per thread, reused from word to word (EncodeBatch encodes documents on many threads).
    [ThreadStatic] private static PriorityQueue<int, long>? t_queue;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    private int _cacheCount;
    private const int CacheLimit = 500_000;
    private const int MaxCachedWordLength = 256;

    /// <summary>byteLevel: words arrive as raw text and are mapped to byte-level characters here (a ByteLevel
    /// pre-tokenizer ran).</summary>
    public BytePairModel(Dictionary<string, int> vocab, Dictionary<long, (int Rank, int NewId)> merges, bool ignoreMerges,
                         int? unkId, bool fuseUnk, bool byteFallback, bool byteLevel)
    {
        _vocab = vocab;
        _vocabBySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _merges = merges;
        _ignoreMerges = ignoreMerges;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _byteLevel = byteLevel;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _charIds = new int[char.MaxValue + 1];
        Array.Fill(_charIds, -1);
        foreach (var (token, tokenId) in vocab)
            if (token.Length == 1 && !char.IsSurrogate(token[0])) _charIds[token[0]] = tokenId;
        if (!byteLevel && !ignoreMerges && _charIds[Metaspace] >= 0)
        {
            _joinsMetaspace = new bool[char.MaxValue + 1];
            foreach (var token in vocab.Keys)
                for (var k = 1; k < token.Length; k++)
                    if (token[k] == Metaspace && token[k - 1] != Metaspace) _joinsMetaspace[token[k - 1]] = true;
        }
        if (byteFallback)
        {
            // "<0x0A>": tokenizers formats the byte as {:#04X} (lower-case 0x, upper-case digits).
            _byteFallbackIds = new int[256];
            for (var b = 0; b < 256; b++) _byteFallbackIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
        }
    }

    public int MergeCount => _merges.Count;

    public static long PairKey(int a, int b) => ((long)a << 32) | (uint)b;

    private static long Priority(int rank, int position) => ((long)rank << 32) | (uint)position;

    /// <summary>Appends the ids of one pre-token.</summary>
    public void EncodeWord(ReadOnlySpan<char> word, List<int> output)
    {
        if (_joinsMetaspace is null) { EncodePiece(word, output); return; }
        var start = 0;
        for (var i = 1; i < word.Length; i++)
        {
            // A cut before this '▁' needs a previous character that is a token by itself (not byte fallback or
            // unknown) and never joined to a following '▁' in the vocabulary.
            var before = word[i - 1];
            if (word[i] != Metaspace || before == Metaspace || _charIds[before] < 0 || _joinsMetaspace[before]) continue;
            EncodePiece(word[start..i], output);
            start = i;
        }
        EncodePiece(word[start..], output);
    }

    private void EncodePiece(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.Length == 0) return;
        var cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _cacheBySpan.TryGetValue(word, out var cached)) { output.AddRange(cached); return; }
        var ids = _byteLevel ? Tokenize(ByteLevel.Encode(word)) : Tokenize(word);
        if (cacheable)
        {
            // ConcurrentDictionary.Count takes every lock: count the insertions instead (approximately, after a Clear).
            if (Interlocked.Increment(ref _cacheCount) > CacheLimit)
            {
                _cache.Clear();
                Interlocked.Exchange(ref _cacheCount, 0);
            }
            _cache.TryAdd(word.ToString(), ids);
        }
        output.AddRange(ids);
    }

    private int[] Tokenize(ReadOnlySpan<char> word)
    {
        if (_ignoreMerges && _vocabBySpan.TryGetValue(word, out var whole)) return [whole];
        // Symbols as a doubly linked list over the initial symbols; a merged-away symbol is marked dead.
        var capacity = word.Length * (_byteFallbackIds is null ? 1 : 4);
        var id = ArrayPool<int>.Shared.Rent(capacity);
        var prev = ArrayPool<int>.Shared.Rent(capacity);
        var next = ArrayPool<int>.Shared.Rent(capacity);
        var alive = ArrayPool<bool>.Shared.Rent(capacity);
        try
        {
            var count = 0;
            void Add(int tokenId, int[] id, int[] prev, int[] next, bool[] alive)
            {
                id[count] = tokenId;
                prev[count] = count - 1;
                next[count] = -1;
                if (count > 0) next[count - 1] = count;
                alive[count] = true;
                count++;
            }
            var pendingUnk = false;
            Span<byte> utf8 = stackalloc byte[4];
            var i = 0;
            while (i < word.Length)
            {
                var n = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
                var ch = word.Slice(i, n);
                i += n;
                var cid = n == 1 ? _charIds[ch[0]] : -1;
                if (cid >= 0 || (n == 2 && _vocabBySpan.TryGetValue(ch, out cid)))
                {
                    if (pendingUnk) { Add(_unkId!.Value, id, prev, next, alive); pendingUnk = false; }
                    Add(cid, id, prev, next, alive);
                    continue;
                }
                if (_byteFallbackIds is not null)
                {
                    var bytes = Encoding.UTF8.GetBytes(ch, utf8);
                    var all = true;
                    for (var k = 0; k < bytes; k++) all &= _byteFallbackIds[utf8[k]] >= 0;
                    if (all)
                    {
                        if (pendingUnk) { Add(_unkId!.Value, id, prev, next, alive); pendingUnk = false; }
                        for (var k = 0; k < bytes; k++) Add(_byteFallbackIds[utf8[k]], id, prev, next, alive);
                        continue;
                    }
                }
                if (_unkId is { } unk)
                {
                    // fuse_unk: a run of unknown characters is one unknown token.
                    if (pendingUnk && !_fuseUnk) Add(unk, id, prev, next, alive);
                    pendingUnk = true;
                }
            }
            if (pendingUnk) Add(_unkId!.Value, id, prev, next, alive);

            // Candidate merges keyed by (rank, position): the lowest rank first, the leftmost on ties. An entry is
            // checked when it comes out, since merges around it may have changed the pair since it was queued (a
            // pair's rank fixes its merged id, so an equal rank means the same merge).
            var queue = t_queue ??= new PriorityQueue<int, long>();
            queue.Clear();
            for (var k = 0; k + 1 < count; k++)
                if (_merges.TryGetValue(PairKey(id[k], id[k + 1]), out var m)) queue.Enqueue(k, Priority(m.Rank, k));
            while (queue.TryDequeue(out var pos, out var priority))
            {
                if (!alive[pos]) continue;
                var right = next[pos];
                if (right < 0) continue;
                if (!_merges.TryGetValue(PairKey(id[pos], id[right]), out var current) || current.Rank != (int)(priority >> 32)) continue;
                id[pos] = current.NewId;
                alive[right] = false;
                var after = next[right];
                next[pos] = after;
                if (after >= 0) prev[after] = pos;
                var before = prev[pos];
                if (before >= 0 && _merges.TryGetValue(PairKey(id[before], current.NewId), out var mb))
                    queue.Enqueue(before, Priority(mb.Rank, before));
                if (after >= 0 && _merges.TryGetValue(PairKey(current.NewId, id[after]), out var ma))
                    queue.Enqueue(pos, Priority(ma.Rank, pos));
            }
            var length = 0;
            for (var k = count > 0 ? 0 : -1; k >= 0; k = next[k]) length++;
            var result = new int[length];
            length = 0;
            for (var k = count > 0 ? 0 : -1; k >= 0; k = next[k]) result[length++] = id[k];
            return result;
        }
        finally
        {
            ArrayPool<int>.Shared.Return(id);
            ArrayPool<int>.Shared.Return(prev);
            ArrayPool<int>.Shared.Return(next);
            ArrayPool<bool>.Shared.Return(alive);
        }
    }
}
