using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>
/// Keys and values of the tokens already seen, per decoder layer, for generation: preallocated
/// [batch, kv_heads, MaxLength, head_dim] in the model's compute dtype, plus which cached positions are real tokens
/// (the attention mask). Made by <see cref="CausalLM.NewKvCache"/>; inference only (no autograd through it).
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _keys, _values;
    private readonly Tensor _valid;  // bool [B, MaxLength]
    private bool _disposed;

    internal KvCache(ModelConfig cfg, int batch, int maxLength, ScalarType dtype, Device device)
    {
        Batch = batch;
        MaxLength = maxLength;
        _keys = new Tensor[cfg.NumHiddenLayers];
        _values = new Tensor[cfg.NumHiddenLayers];
        for (var i = 0; i < cfg.NumHiddenLayers; i++)
        {
            _keys[i] = zeros([batch, cfg.NumKeyValueHeads, maxLength, cfg.HeadDim], dtype, device).DetachFromDisposeScope();
            _values[i] = zeros([batch, cfg.NumKeyValueHeads, maxLength, cfg.HeadDim], dtype, device).DetachFromDisposeScope();
        }
        _valid = ones([batch, maxLength], ScalarType.Bool, device).DetachFromDisposeScope();
    }

    /// <summary>Tokens already cached (the position of the next token).</summary>
    public int Length { get; private set; }

    public int Batch { get; }
    public int MaxLength { get; }

    /// <summary>Which cached positions are real tokens: bool [B, Length] (a view).</summary>
    internal Tensor Valid(long length) => _valid.narrow(1, 0, length);

    /// <summary>Layer <paramref name="layer"/>'s whole key buffer [B, kv_heads, MaxLength, head_dim] (the decoding engine
    /// writes into it directly).</summary>
    internal Tensor KeysOf(int layer) => _keys[layer];

    /// <summary>Layer <paramref name="layer"/>'s whole value buffer [B, kv_heads, MaxLength, head_dim].</summary>
    internal Tensor ValuesOf(int layer) => _values[layer];

    /// <summary>The whole validity mask, bool [B, MaxLength].</summary>
    internal Tensor ValidMask => _valid;

    internal bool IsDisposed => _disposed;

    internal void SetValid(Tensor mask, long start) => _valid.narrow(1, start, mask.shape[1]).copy_(mask);

    /// <summary>Stores k, v [B, kv_heads, T, D] at positions Length… and returns all keys/values so far (views).</summary>
    internal (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var t = k.shape[2];
        _keys[layer].narrow(2, Length, t).copy_(k);
        _values[layer].narrow(2, Length, t).copy_(v);
        return (_keys[layer].narrow(2, 0, Length + t), _values[layer].narrow(2, 0, Length + t));
    }

    internal void Advance(int tokens) => Length += tokens;

    /// <summary>Forgets every cached token (the buffers are reused).</summary>
    public void Reset()
    {
        Length = 0;
        _valid.fill_(true);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _keys.Concat(_values)) t.Dispose();
        _valid.Dispose();
    }
}
