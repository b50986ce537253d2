using SlothSharp.Generation;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// A small causal "language model" with the ICausalLm contract, for evaluation and generation tests that do not need
/// Llama: hidden[t] = tanh(mean of the embeddings of tokens 0..t + position code), so every prediction depends on the
/// whole prefix and on positions (a cache that lost tokens or positions would change the outputs).
/// </summary>
internal sealed class FakeCausalLm : ICausalLm
{
    private readonly Tensor _embedding;
    private readonly Tensor _positions;

    public FakeCausalLm(int vocab = 50, int hidden = 16, int maxPositions = 64, long seed = 7, IReadOnlyList<int>? eos = null)
    {
        var g = new Generator((ulong)seed);
        _embedding = randn([vocab, hidden], generator: g);
        _positions = randn([maxPositions, hidden], generator: g) * 0.3;
        LmHeadWeight = randn([vocab, hidden], generator: g) * 2;
        VocabSize = vocab;
        MaxPositionEmbeddings = maxPositions;
        EosTokenIds = eos ?? [];
    }

    public Device Device => CPU;
    public int VocabSize { get; }
    public int MaxPositionEmbeddings { get; }
    public IReadOnlyList<int> EosTokenIds { get; }
    public double? FinalLogitSoftcap => null;
    public int? DynamicRopeLength => null;
    public void ResetCache(IDisposable cache) => throw new NotSupportedException();
    public Tensor LmHeadWeight { get; }
    public int ForwardCalls { get; private set; }
    /// <summary>(ones, elements) of each attention mask seen by Forward (null when none was passed).</summary>
    public List<(long Ones, long Count)?> Masks { get; } = new();

    public sealed class Cache : IDisposable
    {
        public readonly List<long> Tokens = new();
        public readonly int MaxLength;
        public Cache(int maxLength) => MaxLength = maxLength;
        public void Dispose() { }
    }

    public IDisposable NewKvCache(int batch, int maxLength)
    {
        if (batch != 1) throw new NotSupportedException("fake cache: batch 1");
        return new Cache(maxLength);
    }

    /// <summary>Positions are the token's index in its (single-row) sequence; given positionIds must agree.</summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask, IDisposable? cache, Tensor? positionIds = null)
    {
        ForwardCalls++;
        Masks.Add(attentionMask is null ? null : (attentionMask.sum().item<long>(), attentionMask.numel()));
        var (b, t) = (inputIds.shape[0], inputIds.shape[1]);
        long past = 0;
        var ids = inputIds;
        if (cache is Cache c)
        {
            past = c.Tokens.Count;
            if (past + t > c.MaxLength) throw new InvalidOperationException("fake cache overflow");
            ids = cat([tensor(c.Tokens.ToArray(), ScalarType.Int64).reshape(1, past), inputIds], 1);
            c.Tokens.AddRange(inputIds.data<long>());
        }
        var total = past + t;
        if (positionIds is not null && !positionIds.reshape(-1).eq(arange(past, total, ScalarType.Int64)).all().item<bool>())
            throw new ArgumentException("fake model: positionIds must continue the sequence");
        if (total > MaxPositionEmbeddings) throw new ArgumentException("too long");
        var e = _embedding.index_select(0, ids.reshape(-1)).reshape(b, total, -1);
        var counts = arange(1, total + 1, ScalarType.Float32).reshape(1, total, 1);
        var h = (e.cumsum(1) / counts + _positions.narrow(0, 0, total).unsqueeze(0)).tanh();
        return h.narrow(1, past, t);
    }

    public Tensor Logits(Tensor hidden) => matmul(hidden.to(ScalarType.Float32), LmHeadWeight.t());
}
