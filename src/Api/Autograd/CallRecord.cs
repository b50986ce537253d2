using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>What a SlothSharp function saves at forward time for its backward's guard.</summary>
/// <param name="Present">Per input tensor: false where null was passed (its gradient must be null).</param>
/// <param name="ForwardThread">Where a backward failure is rethrown.</param>
internal sealed record CallRecord(bool[] Present, AutogradState ForwardThread)
{
    /// <summary>apply() arguments: the inputs and the plan (TorchSharp wants one gradient, possibly null, for each).</summary>
    public int Slots => Present.Length + 1;

    /// <summary>One gradient per input, and none for an input that was null.</summary>
    public void Check(string function, Tensor?[] grads)
    {
        if (grads.Length != Present.Length)
            throw new InvalidOperationException($"{function} backward returned {grads.Length} gradients for {Present.Length} inputs");
        for (var i = 0; i < grads.Length; i++)
            if (grads[i] is not null && !Present[i])
                throw new InvalidOperationException($"{function} backward returned a gradient for input {i}, which was null");
    }
}
