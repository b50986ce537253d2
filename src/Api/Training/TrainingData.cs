using System.Security.Cryptography;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Training;

/// <summary>
/// Token rows for causal-LM training. Each document becomes BOS + its tokens + EOS. Without packing, every document is
/// its own row, right-padded to the longest row of its micro-batch (attention mask 0 and label -100 on padding); a
/// document longer than the sequence length T is split into windows of T tokens that overlap by one token
/// (starting at 0, T−1, 2(T−1), …), so every next-token prediction of the document is trained exactly once and
/// nothing is cut away. With packing, the documents' token streams (EOS between documents) are concatenated and cut
/// into windows of T tokens the same way; only the last row may be shorter. Labels are the input ids themselves; the
/// shift (position t predicts token t+1) happens in the loss.
/// </summary>
public sealed class TrainingData
{
    private TrainingData(IReadOnlyList<int[]> rows, int sequenceLength, int padId, bool packed, int documents)
    {
        Rows = rows;
        SequenceLength = sequenceLength;
        PadId = padId;
        Packed = packed;
        Documents = documents;
        Tokens = rows.Sum(r => (long)r.Length);
        Fingerprint = ComputeFingerprint(rows);
    }

    public IReadOnlyList<int[]> Rows { get; }
    public int SequenceLength { get; }
    public int PadId { get; }
    public bool Packed { get; }
    public int Documents { get; }
    public long Tokens { get; }

    /// <summary>SHA-256 of the rows: a resumed run checks it trains on the same tokens.</summary>
    public string Fingerprint { get; }

    /// <summary>Tokenizes <paramref name="documents"/> (BOS + text + EOS) and cuts them into rows.</summary>
    public static TrainingData FromDocuments(HfTokenizer tokenizer, IReadOnlyList<string> documents, int sequenceLength, bool packing)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(documents);
        if (documents.Count == 0) throw new ArgumentException("no documents to train on", nameof(documents));
        if (sequenceLength < 2) throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, "must be >= 2");
        var eos = tokenizer.EosTokenId;
        var tokenized = documents.Select(d =>
        {
            var ids = tokenizer.Encode(d, addBos: tokenizer.BosTokenId is not null);
            return eos is { } e ? [.. ids, e] : ids;
        }).ToList();
        var pad = tokenizer.PadTokenId ?? eos ?? 0;
        var rows = new List<int[]>();
        if (packing) rows.AddRange(Windows(tokenized.SelectMany(t => t).ToArray(), sequenceLength));
        else foreach (var t in tokenized) rows.AddRange(Windows(t, sequenceLength));
        if (rows.Count == 0) throw new ArgumentException("the documents have no tokens to learn from (every one is shorter than 2 tokens)", nameof(documents));
        return new TrainingData(rows, sequenceLength, pad, packing, documents.Count);
    }

    /// <summary>Rows given as token ids (each 2..T tokens), padded with <paramref name="padId"/> in a batch.</summary>
    public static TrainingData FromTokenRows(IReadOnlyList<int[]> rows, int sequenceLength, int padId)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0) throw new ArgumentException("no rows to train on", nameof(rows));
        for (var i = 0; i < rows.Count; i++)
            if (rows[i].Length < 2 || rows[i].Length > sequenceLength)
                throw new ArgumentException($"row {i} has {rows[i].Length} tokens; rows need 2..{sequenceLength}", nameof(rows));
        return new TrainingData(rows.Select(r => r.ToArray()).ToList(), sequenceLength, padId, packed: false, rows.Count);
    }

    /// <summary>Windows of at most <paramref name="t"/> tokens with stride t−1 (consecutive windows share one token);
    /// a trailing window of a single token has nothing to predict and is dropped.</summary>
    internal static IEnumerable<int[]> Windows(int[] tokens, int t)
    {
        for (var start = 0; start + 1 < tokens.Length; start += t - 1)
            yield return tokens[start..Math.Min(tokens.Length, start + t)];
    }

    /// <summary>Input ids, attention mask (null when no row is padded) and labels (-100 on padding) for the given rows,
    /// padded to the longest of them.</summary>
    internal (Tensor Ids, Tensor? Mask, Tensor Labels, long Tokens, long Targets) Collate(IReadOnlyList<int> rowIndices, Device device)
    {
        var width = rowIndices.Max(i => Rows[i].Length);
        var n = rowIndices.Count;
        var ids = new long[n * width];
        var mask = new long[n * width];
        var labels = new long[n * width];
        long tokens = 0, targets = 0;
        var padded = false;
        for (var b = 0; b < n; b++)
        {
            var row = Rows[rowIndices[b]];
            for (var j = 0; j < width; j++)
            {
                var real = j < row.Length;
                ids[b * width + j] = real ? row[j] : PadId;
                mask[b * width + j] = real ? 1 : 0;
                labels[b * width + j] = real ? row[j] : -100;
            }
            padded |= row.Length < width;
            tokens += row.Length;
            targets += row.Length - 1;
        }
        return (tensor(ids).reshape(n, width).to(device), padded ? tensor(mask).reshape(n, width).to(device) : null,
                tensor(labels).reshape(n, width).to(device), tokens, targets);
    }

    private static string ComputeFingerprint(IReadOnlyList<int[]> rows)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> buffer = stackalloc byte[4];
        foreach (var r in rows)
        {
            BitConverter.TryWriteBytes(buffer, r.Length);
            sha.AppendData(buffer);
            foreach (var id in r)
            {
                BitConverter.TryWriteBytes(buffer, id);
                sha.AppendData(buffer);
            }
        }
        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }
}

/// <summary>The seeded data order: epoch e visits the rows in a Fisher–Yates permutation drawn from SplitMix64 seeded
/// with (seed, e), so the position in the data is one number (rows consumed) and a resumed run sees the same order.</summary>
internal sealed class DataOrder
{
    private readonly int _rows;
    private readonly long _seed;
    private readonly bool _shuffle;
    private int _epoch = -1;
    private int[] _order = [];

    public DataOrder(int rows, long seed, bool shuffle) => (_rows, _seed, _shuffle) = (rows, seed, shuffle);

    /// <summary>The row at global position <paramref name="position"/> (rows consumed since the start of training).</summary>
    public int RowAt(long position)
    {
        var epoch = (int)(position / _rows);
        if (epoch != _epoch)
        {
            _order = Enumerable.Range(0, _rows).ToArray();
            if (_shuffle)
            {
                var rng = new SplitMix64(SplitMix64.Mix((ulong)_seed, (ulong)epoch + 0x5EED));
                for (var i = _rows - 1; i > 0; i--)
                {
                    var j = (int)(rng.Next() % (ulong)(i + 1));
                    (_order[i], _order[j]) = (_order[j], _order[i]);
                }
            }
            _epoch = epoch;
        }
        return _order[(int)(position % _rows)];
    }
}

/// <summary>A tiny, portable, seedable generator (Steele et al.'s SplitMix64): the same sequence on every platform and
/// .NET version, unlike System.Random's unspecified algorithm.</summary>
internal struct SplitMix64(ulong state)
{
    private ulong _state = state;

    public ulong Next()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public static ulong Mix(ulong a, ulong b) => new SplitMix64(a ^ (b * 0xD1B54A32D192ED03UL)).Next();
}
