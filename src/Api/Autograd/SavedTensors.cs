using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>The tensors a forward saved with <c>ctx.save_for_backward</c>, unpacked for one backward. Disposing it
/// disposes these managed wrappers only: the graph keeps its own references.</summary>
public sealed class SavedTensors : IDisposable
{
    private readonly List<Tensor> _tensors;

    private SavedTensors(List<Tensor> tensors) => _tensors = tensors;

    public static SavedTensors Of(autograd.AutogradContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        return new SavedTensors(ctx.get_saved_variables());
    }

    /// <summary>The i-th saved tensor, or null where null was saved.</summary>
    public Tensor? this[int i] => _tensors[i] is { IsInvalid: false } t ? t : null;

    public int Count => _tensors.Count;

    public void Dispose()
    {
        foreach (var t in _tensors) t?.Dispose();
        _tensors.Clear();
    }
}
