using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>Keeps tensors made in an autograd forward alive for backward without TorchSharp's "tensor in save_data"
/// warning (save_for_backward is for inputs and outputs); backward takes them out, and so owns them, exactly once.</summary>
internal sealed class TensorBox(params Tensor?[] tensors)
{
    private Tensor?[]? _tensors = tensors;

    public Tensor?[] Take()
    {
        var t = Interlocked.Exchange(ref _tensors, null)
                ?? throw new InvalidOperationException("backward ran twice through a graph that was freed; use retain_graph");
        return t;
    }
}
