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
        if (byteFallback)
        {
            // "<0x0A>": tokenizers formats the byte as {:#04X} (lower-case 0x, upper-case digits).
            _byteFallbackIds = new int[256];
            for (var b = 0; b < 256; b++) _byteFallbackIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
        }
    }

    public int MergeCount => _merges.Count;

    public static long PairKey(int a, int b) => ((long)a << 32) | (uint)b;

    /// <summary>Appends the ids of one pre-token.</summary>
    public void EncodeWord(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.Length == 0) return;
        var cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _cacheBySpan.TryGetValue(word, out var cached)) { output.AddRange(cached); return; }
        var ids = Tokenize(_byteLevel ? ByteLevel.Encode(word) : word.ToString());
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

    private int[] Tokenize(string word)
    {
        if (_ignoreMerges && _vocab.TryGetValue(word, out var whole)) return [whole];
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
                var ch = word.AsSpan(i, n);
                i += n;
                if (_vocabBySpan.TryGetValue(ch, out var cid))
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

            var queue = new PriorityQueue<(int Pos, int Rank, int NewId), (int Rank, int Pos)>();
            for (var k = 0; k + 1 < count; k++)
                if (_merges.TryGetValue(PairKey(id[k], id[k + 1]), out var m)) queue.Enqueue((k, m.Rank, m.NewId), (m.Rank, k));
            while (queue.TryDequeue(out var top, out _))
            {
                if (!alive[top.Pos]) continue;
                var right = next[top.Pos];
                if (right < 0) continue;
                // The pair may have changed since it was queued: merge only if it still is the queued merge.
                if (!_merges.TryGetValue(PairKey(id[top.Pos], id[right]), out var current) || current != (top.Rank, top.NewId)) continue;
                id[top.Pos] = top.NewId;
                alive[right] = false;
                var after = next[right];
                next[top.Pos] = after;
                if (after >= 0) prev[after] = top.Pos;
                var before = prev[top.Pos];
                if (before >= 0 && _merges.TryGetValue(PairKey(id[before], top.NewId), out var mb))
                    queue.Enqueue((before, mb.Rank, mb.NewId), (mb.Rank, before));
                if (after >= 0 && _merges.TryGetValue(PairKey(top.NewId, id[after]), out var ma))
                    queue.Enqueue((top.Pos, ma.Rank, ma.NewId), (ma.Rank, top.Pos));
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
