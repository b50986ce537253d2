namespace SlothSharp.Tokenization;

/// <summary>
/// The BPE model of a tokenizer.json: vocabulary and ranked merges. A word (one pre-token, already byte-level
/// mapped) starts as one symbol per character; then, as Hugging Face <c>tokenizers</c> does, the adjacent pair with
/// the lowest merge rank is merged (ties: leftmost first) until no pair has a merge. With <c>ignore_merges</c>
/// (Llama 3) a word that is itself in the vocabulary is one token without any merging.
/// </summary>
internal sealed class BytePairModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly bool _ignoreMerges;
    private readonly int? _unkId;
    private readonly Dictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private const int CacheLimit = 200_000;

    public BytePairModel(Dictionary<string, int> vocab, Dictionary<long, (int Rank, int NewId)> merges, bool ignoreMerges, int? unkId)
    {
        _vocab = vocab;
        _merges = merges;
        _ignoreMerges = ignoreMerges;
        _unkId = unkId;
    }

    public int MergeCount => _merges.Count;

    public static long PairKey(int a, int b) => ((long)a << 32) | (uint)b;

    public void EncodeWord(string word, List<int> output)
    {
        if (word.Length == 0) return;
        int[]? cached;
        lock (_cache) _cache.TryGetValue(word, out cached);
        if (cached is not null) { output.AddRange(cached); return; }
        var ids = Merge(word);
        lock (_cache)
        {
            if (_cache.Count >= CacheLimit) _cache.Clear();
            _cache[word] = ids;
        }
        output.AddRange(ids);
    }

    private int[] Merge(string word)
    {
        if (_ignoreMerges && _vocab.TryGetValue(word, out var whole)) return [whole];
        // Symbols as a doubly linked list over the initial characters; a merged-away symbol is marked dead.
        var n = word.Length;
        var id = new int[n];
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        var count = 0;
        for (var i = 0; i < n; i++)
        {
            // A character outside the vocabulary becomes the unknown token, or is dropped when there is none
            // (what tokenizers does; with byte-level vocabularies every byte character is present).
            if (_vocab.TryGetValue(word[i].ToString(), out var cid)) id[count] = cid;
            else if (_unkId is { } unk) id[count] = unk;
            else continue;
            prev[count] = count - 1;
            next[count] = -1;
            if (count > 0) next[count - 1] = count;
            alive[count] = true;
            count++;
        }
        var queue = new PriorityQueue<(int Pos, int Rank, int NewId), (int Rank, int Pos)>();
        for (var i = 0; i + 1 < count; i++)
            if (_merges.TryGetValue(PairKey(id[i], id[i + 1]), out var m)) queue.Enqueue((i, m.Rank, m.NewId), (m.Rank, i));
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
        var result = new List<int>(count);
        for (var i = count > 0 ? 0 : -1; i >= 0; i = next[i]) result.Add(id[i]);
        return result.ToArray();
    }
}
