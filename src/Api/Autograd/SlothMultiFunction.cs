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
    public static List<Tensor> Apply(TPlan plan, params Tensor?[] inputs) => apply(FunctionArguments.Enter(plan, inputs));

    protected abstract List<Tensor> Forward(autograd.AutogradContext ctx, TPlan plan, Tensor?[] inputs);

    protected abstract Tensor?[] Backward(autograd.AutogradContext ctx, TPlan plan, List<Tensor> gradOutputs);

    public sealed override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (plan, inputs) = FunctionArguments.Unpack<TPlan>(ctx, vars, Name);
        return Forward(ctx, plan, inputs);
    }

    public sealed override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs) =>
        SlothAutograd.GuardedBackward(Name, FunctionArguments.Call(ctx),
            () => Backward(ctx, FunctionArguments.Plan<TPlan>(ctx), gradOutputs));
}
