using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>Named tensors read on demand: one safetensors file (<see cref="SafetensorsReader"/>), a sharded checkpoint
/// (<see cref="SafetensorsCheckpoint"/>), or a state dict (<see cref="TensorDictionarySource"/>).</summary>
public interface ITensorSource
{
    /// <summary>Where the tensors come from (a file or directory path), for error messages.</summary>
    string Path { get; }
    IEnumerable<string> Keys { get; }
    bool Contains(string name);
    /// <summary>A new tensor the caller owns, of the stored dtype and shape, on <paramref name="device"/> (default CPU).
    /// Throws <see cref="KeyNotFoundException"/> naming the source when there is no such tensor.</summary>
    Tensor Read(string name, Device? device = null);
}

/// <summary>An <see cref="ITensorSource"/> over tensors in memory (e.g. a <c>state_dict()</c>): <see cref="Read"/>
/// returns copies, so the caller may dispose them.</summary>
public sealed class TensorDictionarySource(IReadOnlyDictionary<string, Tensor> tensors, string path = "state dict") : ITensorSource
{
    public string Path { get; } = path;
    public IEnumerable<string> Keys => tensors.Keys;
    public bool Contains(string name) => tensors.ContainsKey(name);

    public Tensor Read(string name, Device? device = null) =>
        tensors.TryGetValue(name, out var t)
            ? t.detach().to(device ?? CPU, copy: true)
            : throw new KeyNotFoundException($"{Path}: no tensor named '{name}'");
}
