using System.Security.Cryptography;
using SlothSharp.Data;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Training;

/// <summary>
/// Token rows for causal-LM training, with per-token labels and document boundaries.
/// <para>Each example becomes one token sequence (a document) with a trained flag per token: text is BOS + its tokens +
/// EOS, all trained (<see cref="FromDocuments"/>); chats and prompt/completion pairs train what
/// <see cref="TrainOn"/> says (<see cref="FromExamples"/>, through <see cref="ExampleTokenizer"/>).</para>
/// <para>Without packing, every document is its own row, right-padded to the longest row of its micro-batch; a
/// document longer than the sequence length T is split into windows of T tokens that overlap by one token (starting
/// at 0, T−1, 2(T−1), …), so every next-token prediction of the document is trained exactly once and nothing is cut
/// away. With packing, the documents' token streams are concatenated and cut into windows of T tokens the same way
/// (only the last row may be shorter), but a row remembers where each document (segment) starts: position ids restart
/// at 0 there, sequence ids number the segments, and the label of a segment's first token is -100 so no token is
/// trained to predict across a boundary. Rows without any trained target are dropped.</para>
/// <para>Labels are the input ids where trained, -100 elsewhere; the shift (position t predicts token t+1) happens in
/// the loss.</para>
/// </summary>
public sealed class TrainingData
{
    private readonly IReadOnlyList<bool[]> _trained;
    private readonly IReadOnlyList<int[]> _segmentStarts;

    private TrainingData(IReadOnlyList<int[]> rows, IReadOnlyList<bool[]> trained, IReadOnlyList<int[]> segmentStarts,
                         int sequenceLength, int padId, bool packed, int documents, bool hashLabels)
    {
        Rows = rows;
        _trained = trained;
        _segmentStarts = segmentStarts;
        SequenceLength = sequenceLength;
        PadId = padId;
        Packed = packed;
        Documents = documents;
        Tokens = rows.Sum(r => (long)r.Length);
        RowTargets = trained.Select(t => t.Skip(1).Count(x => x)).ToArray();
        Fingerprint = ComputeFingerprint(rows, hashLabels ? trained : null, hashLabels ? segmentStarts : null);
    }

    public IReadOnlyList<int[]> Rows { get; }
    public int SequenceLength { get; }
    public int PadId { get; }
    public bool Packed { get; }
    public int Documents { get; }
    public long Tokens { get; }

    /// <summary>Trained targets of each row (labels that are not -100, the first position excluded since nothing
    /// predicts it): the loss normalizer of a batch is the sum over its rows.</summary>
    public IReadOnlyList<int> RowTargets { get; }

    /// <summary>SHA-256 of the rows (and, for <see cref="FromExamples"/>/<see cref="FromTokenized"/>, of their trained
    /// flags and document boundaries): a resumed run checks it trains on the same tokens. Plain text gives the same
    /// fingerprint as before labels and boundaries were kept.</summary>
    public string Fingerprint { get; }

    /// <summary>Tokenizes <paramref name="documents"/> (BOS + text + EOS, all trained) and cuts them into rows.</summary>
    public static TrainingData FromDocuments(HfTokenizer tokenizer, IReadOnlyList<string> documents, int sequenceLength, bool packing)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(documents);
        if (documents.Count == 0) throw new ArgumentException("no documents to train on", nameof(documents));
        if (sequenceLength < 2) throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, "must be >= 2");
        var eos = tokenizer.EosTokenId;
        var tokenized = documents.Select((d, i) =>
        {
            var ids = tokenizer.Encode(d, addBos: tokenizer.BosTokenId is not null);
            ids = eos is { } e ? [.. ids, e] : ids;
            var trained = new bool[ids.Length];
            Array.Fill(trained, true);
            return new TokenizedExample(ids, trained, $"document {i}");
        }).ToList();
        var data = Build(tokenized, sequenceLength, PadOf(tokenizer), packing, hashLabels: false);
        if (data is null) throw new ArgumentException("the documents have no tokens to learn from (every one is shorter than 2 tokens)", nameof(documents));
        return data;
    }

    /// <summary>Tokenizes <paramref name="examples"/> with their labels (<see cref="ExampleTokenizer"/>; conversations
    /// need <paramref name="render"/>, the chat template) and cuts them into rows.</summary>
    /// <exception cref="InvalidDataException">An example cannot be tokenized (the message names it), or no token of
    /// the whole dataset is trained.</exception>
    public static TrainingData FromExamples(IReadOnlyList<TrainingExample> examples, HfTokenizer tokenizer, RenderConversation? render, TrainingDataOptions options)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        if (examples.Count == 0) throw new ArgumentException("no examples to train on", nameof(examples));
        var exampleTokenizer = new ExampleTokenizer(tokenizer, render);
        var tokenized = examples.Select(e => exampleTokenizer.Tokenize(e, options.TrainOn)).ToList();
        return FromTokenized(tokenized, PadOf(tokenizer), options);
    }

    /// <summary>Rows from examples already tokenized with their trained flags.</summary>
    /// <exception cref="InvalidDataException">No token of the dataset is trained (every label would be -100: the loss
    /// would be zero or undefined, so this is refused rather than trained silently).</exception>
    public static TrainingData FromTokenized(IReadOnlyList<TokenizedExample> examples, int padId, TrainingDataOptions options)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(options);
        if (examples.Count == 0) throw new ArgumentException("no examples to train on", nameof(examples));
        if (options.SequenceLength < 2) throw new ArgumentOutOfRangeException(nameof(options), options.SequenceLength, "SequenceLength must be >= 2");
        foreach (var e in examples)
            if (e.Ids.Length != e.Trained.Length)
                throw new ArgumentException($"{e.Source}: {e.Ids.Length} ids but {e.Trained.Length} trained flags", nameof(examples));
        return Build(examples, options.SequenceLength, padId, options.Packing, hashLabels: true)
            ?? throw new InvalidDataException(
                $"no token of the {examples.Count} examples is trained (train-on {options.TrainOn}): every label is masked, so the loss would be " +
                "zero; check that the conversations have assistant replies (or the rows completions) and that train-on fits the dataset");
    }

    /// <summary>Rows given as token ids (each 2..T tokens, all trained), padded with <paramref name="padId"/> in a batch.</summary>
    public static TrainingData FromTokenRows(IReadOnlyList<int[]> rows, int sequenceLength, int padId)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0) throw new ArgumentException("no rows to train on", nameof(rows));
        for (var i = 0; i < rows.Count; i++)
            if (rows[i].Length < 2 || rows[i].Length > sequenceLength)
                throw new ArgumentException($"row {i} has {rows[i].Length} tokens; rows need 2..{sequenceLength}", nameof(rows));
        var copies = rows.Select(r => r.ToArray()).ToList();
        var trained = copies.Select(r => { var t = new bool[r.Length]; Array.Fill(t, true); t[0] = false; return t; }).ToList();
        return new TrainingData(copies, trained, copies.Select(_ => new[] { 0 }).ToList(), sequenceLength, padId, packed: false, rows.Count, hashLabels: false);
    }

    private static int PadOf(HfTokenizer tokenizer) => tokenizer.PadTokenId ?? tokenizer.EosTokenId ?? 0;

    /// <summary>The rows of the documents, or null when no row has a trained target.</summary>
    private static TrainingData? Build(IReadOnlyList<TokenizedExample> docs, int t, int padId, bool packing, bool hashLabels)
    {
        var rows = new List<int[]>();
        var trained = new List<bool[]>();
        var segments = new List<int[]>();
        void Cut(int[] ids, bool[] flags, bool[]? docStart)
        {
            foreach (var (start, end) in WindowRanges(ids.Length, t))
            {
                var rowTrained = flags[start..end];
                rowTrained[0] = false;  // nothing in the row predicts its first token
                var starts = new List<int> { 0 };
                if (docStart is not null)
                    for (var k = start + 1; k < end; k++)
                        if (docStart[k]) { starts.Add(k - start); rowTrained[k - start] = false; }
                if (!rowTrained.Contains(true)) continue;
                rows.Add(ids[start..end]);
                trained.Add(rowTrained);
                segments.Add(starts.ToArray());
            }
        }
        if (packing)
        {
            var total = docs.Sum(d => d.Ids.Length);
            var ids = new int[total];
            var flags = new bool[total];
            var docStart = new bool[total];
            var at = 0;
            foreach (var d in docs)
            {
                d.Ids.CopyTo(ids, at);
                d.Trained.CopyTo(flags, at);
                if (d.Ids.Length > 0) docStart[at] = true;
                at += d.Ids.Length;
            }
            Cut(ids, flags, docStart);
        }
        else foreach (var d in docs) Cut(d.Ids, d.Trained, null);
        return rows.Count == 0 ? null : new TrainingData(rows, trained, segments, t, padId, packing, docs.Count, hashLabels);
    }

    /// <summary>Windows of at most <paramref name="t"/> tokens with stride t−1 (consecutive windows share one token);
    /// a trailing window of a single token has nothing to predict and is dropped.</summary>
    internal static IEnumerable<int[]> Windows(int[] tokens, int t) => WindowRanges(tokens.Length, t).Select(w => tokens[w.Start..w.End]);

    private static IEnumerable<(int Start, int End)> WindowRanges(int length, int t)
    {
        for (var start = 0; start + 1 < length; start += t - 1)
            yield return (start, Math.Min(length, start + t));
    }

    /// <summary>Input ids, attention mask (null when no row is padded) and labels (-100 on padding, on untrained tokens
    /// and at document starts) for the given rows, padded to the longest of them; the real tokens and trained targets
    /// they hold. Kept for the trainer until it takes <see cref="CollateBatch"/>.</summary>
    internal (Tensor Ids, Tensor? Mask, Tensor Labels, long Tokens, long Targets) Collate(IReadOnlyList<int> rowIndices, Device device)
    {
        var a = Arrays(rowIndices);
        var shape = new long[] { a.Rows, a.Width };
        return (tensor(a.Ids).reshape(shape).to(device), a.Padded ? tensor(a.Mask).reshape(shape).to(device) : null,
                tensor(a.Labels).reshape(shape).to(device), a.Tokens, a.Targets);
    }

    /// <summary>The batch of the given rows, padded on the right to the longest of them (width W ≤ T): all tensors
    /// int64 [B, W] on <paramref name="device"/>; see <see cref="TrainingBatch"/> for what each holds.</summary>
    public TrainingBatch CollateBatch(IReadOnlyList<int> rowIndices, Device device)
    {
        ArgumentNullException.ThrowIfNull(rowIndices);
        var a = Arrays(rowIndices);
        var shape = new long[] { a.Rows, a.Width };
        return new TrainingBatch(
            tensor(a.Ids).reshape(shape).to(device),
            a.Padded ? tensor(a.Mask).reshape(shape).to(device) : null,
            tensor(a.Labels).reshape(shape).to(device),
            tensor(a.Positions).reshape(shape).to(device),
            tensor(a.Sequences).reshape(shape).to(device),
            a.MultiDocument, a.Tokens, a.Targets);
    }

    private sealed record BatchArrays(int Rows, int Width, long[] Ids, long[] Mask, long[] Labels, long[] Positions, long[] Sequences,
                                      bool Padded, bool MultiDocument, long Tokens, long Targets);

    private BatchArrays Arrays(IReadOnlyList<int> rowIndices)
    {
        if (rowIndices.Count == 0) throw new ArgumentException("no rows", nameof(rowIndices));
        var width = rowIndices.Max(i => Rows[i].Length);
        var n = rowIndices.Count;
        var ids = new long[n * width];
        var mask = new long[n * width];
        var labels = new long[n * width];
        var positions = new long[n * width];
        var sequences = new long[n * width];
        long tokens = 0, targets = 0;
        bool padded = false, multi = false;
        for (var b = 0; b < n; b++)
        {
            var r = rowIndices[b];
            var row = Rows[r];
            var flags = _trained[r];
            var starts = _segmentStarts[r];
            multi |= starts.Length > 1;
            var segment = -1;
            var segmentStart = 0;
            for (var j = 0; j < width; j++)
            {
                var o = b * width + j;
                if (j >= row.Length)
                {
                    // Padding: its own sequence id (-1), position 0, no label; the attention mask is 0 there.
                    ids[o] = PadId;
                    labels[o] = -100;
                    sequences[o] = -1;
                    continue;
                }
                if (segment + 1 < starts.Length && starts[segment + 1] == j) segmentStart = starts[++segment];
                ids[o] = row[j];
                mask[o] = 1;
                labels[o] = flags[j] ? row[j] : -100;
                positions[o] = j - segmentStart;
                sequences[o] = segment;
            }
            padded |= row.Length < width;
            tokens += row.Length;
            targets += RowTargets[r];
        }
        return new BatchArrays(n, width, ids, mask, labels, positions, sequences, padded, multi, tokens, targets);
    }

    private static string ComputeFingerprint(IReadOnlyList<int[]> rows, IReadOnlyList<bool[]>? trained, IReadOnlyList<int[]>? segments)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[4];
        void Add(int v)
        {
            BitConverter.TryWriteBytes(buffer, v);
            sha.AppendData(buffer);
        }
        foreach (var r in rows)
        {
            Add(r.Length);
            foreach (var id in r) Add(id);
        }
        if (trained is not null && segments is not null)
        {
            sha.AppendData("labels"u8);
            for (var i = 0; i < rows.Count; i++)
            {
                foreach (var f in trained[i]) sha.AppendData(f ? [1] : [0]);
                Add(segments[i].Length);
                foreach (var s in segments[i]) Add(s);
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
