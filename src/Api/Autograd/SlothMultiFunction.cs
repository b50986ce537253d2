using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>
/// <see cref="SlothFunction{TSelf, TPlan}"/> for ops with several outputs (e.g. RoPE on q and k): the same rules, with
/// a list of outputs and a list of upstream gradients (one per output; zeros where an output was unused).
/// </summary>
public abstract class SlothMultiFunction<TSelf, TPlan> : autograd.MultiTensorFunction<TSelf>
    where TSelf : SlothMultiFunction<TSelf, TPlan>, new()
    where TPlan : class
{
    /// <inheritdoc cref="SlothFunction{TSelf, TPlan}.Apply"/>
    public static List<Tensor> Apply(TPlan plan, params Tensor?[] inputs)
    {
        var outer = NodeHousekeeping.TakeLastForward();
        var args = FunctionArguments.Enter(plan, inputs);
        try
        {
            var y = apply(args);
            if (NodeHousekeeping.IsRecorded(inputs)) NodeHousekeeping.TrimOutputCache(NodeHousekeeping.TakeLastForward());
            if (_lastOutputs is { } raw) NodeHousekeeping.DisposeForwardOutputs(raw, y, inputs);
            return y;
        }
        finally
        {
            _lastOutputs = null;
            NodeHousekeeping.ForwardRan(outer!);
        }
    }

    [ThreadStatic] private static List<Tensor>? _lastOutputs;

    protected abstract List<Tensor> Forward(autograd.AutogradContext ctx, TPlan plan, Tensor?[] inputs);

    protected abstract Tensor?[] Backward(autograd.AutogradContext ctx, TPlan plan, List<Tensor> gradOutputs);

    public sealed override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (plan, inputs) = FunctionArguments.Unpack<TPlan>(ctx, vars, Name);
        NodeHousekeeping.ForwardRan(ctx);
        var y = Forward(ctx, plan, inputs);
        _lastOutputs = y;
        return y;
    }

    public sealed override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs)
    {
        List<Tensor>? grads = null;
        var made = new List<Tensor?>();
        try
        {
            grads = SlothAutograd.GuardedBackward(Name, FunctionArguments.Call(ctx), () =>
            {
                var g = new List<Tensor>(gradOutputs.Count);
                for (var i = 0; i < gradOutputs.Count; i++)
                {
                    g.Add(NodeHousekeeping.Materialize(ctx, gradOutputs[i], i, out var isNew));
                    if (isNew) made.Add(g[i]);
                }
                return Backward(ctx, FunctionArguments.Plan<TPlan>(ctx), g);
            });
            return grads;
        }
        finally
        {
            NodeHousekeeping.AfterBackward(ctx, [.. gradOutputs, .. made], grads ?? []);
        }
    }
}
