using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>
/// The base of SlothSharp's custom autograd functions with one output. It unpacks the arguments, guards the backward
/// (an exception there is caught, the step gets no gradients, and the failure is reported through
/// <see cref="SlothAutograd"/>), and releases the gradient wrappers returned to the engine at a point where the
/// engine surely holds its own reference (they would otherwise make PyTorch clone dW into W.grad and keep a dW-sized
/// buffer alive until the .NET GC ran).
/// </summary>
/// <remarks>
/// <para>A new op (RMSNorm, RoPE, LoRA, ...) is one sealed class and one plan record:</para>
/// <code>
/// internal sealed record ScalePlan(double Factor);
/// internal sealed class ScaleFunction : SlothFunction&lt;ScaleFunction, ScalePlan&gt;
/// {
///     public override string Name =&gt; "SlothSharp.Scale";
///     protected override Tensor Forward(AutogradContext ctx, ScalePlan plan, Tensor?[] inputs)
///     {
///         ctx.save_for_backward([inputs[0]!]);      // tensors needed by backward (null allowed)
///         return inputs[0]! * plan.Factor;
///     }
///     protected override Tensor?[] Backward(AutogradContext ctx, ScalePlan plan, Tensor gradOutput)
///     {
///         using var saved = SavedTensors.Of(ctx);    // disposes our wrappers only
///         return [gradOutput * plan.Factor];         // one gradient (or null) per input tensor
///     }
/// }
/// // call site: var y = ScaleFunction.Apply(new ScalePlan(2), x);
/// </code>
/// <para>Rules. Call <see cref="Apply"/>, not TorchSharp's <c>apply</c>: it rethrows a pending backward failure and
/// releases this thread's returned gradients first. Inputs are tensors in a fixed layout; an optional one is passed as
/// null (it then gets a null gradient). Everything else goes in the plan (an immutable record: the single function
/// instance is shared by all threads, so keep no state in fields). Backward returns one gradient per input tensor, null
/// where none is needed; return freshly made tensors (never an input's own wrapper), they are disposed later. Forward
/// tensors that backward needs but that are not inputs go in a <see cref="TensorBox"/> via <c>ctx.save_data</c>.
/// Rows to skip (ignore_index) are selected with <see cref="IgnoredRows"/>. Test an op against the same math through
/// ordinary autograd and against finite differences (tests/Losses/AutogradBaseTests.cs shows both).</para>
/// </remarks>
public abstract class SlothFunction<TSelf, TPlan> : autograd.SingleTensorFunction<TSelf>
    where TSelf : SlothFunction<TSelf, TPlan>, new()
    where TPlan : class
{
    /// <summary>Runs the function: rethrows a pending backward failure of this thread, releases the gradients this
    /// thread returned earlier, then builds the graph node through TorchSharp.</summary>
    public static Tensor Apply(TPlan plan, params Tensor?[] inputs)
    {
        var outer = NodeHousekeeping.TakeLastForward();
        var args = FunctionArguments.Enter(plan, inputs);
        var recorded = NodeHousekeeping.IsRecorded(inputs);
        var wasRecording = _recording;
        _recording = recorded;
        try
        {
            var y = apply(args);
            if (recorded) NodeHousekeeping.TrimOutputCache(NodeHousekeeping.TakeLastForward());
            if (_lastOutput is { } raw) NodeHousekeeping.DisposeForwardOutputs([raw], [y], inputs);
            return y;
        }
        finally
        {
            _lastOutput = null;
            _recording = wasRecording;
            NodeHousekeeping.ForwardRan(outer!);
        }
    }

    [ThreadStatic] private static bool _recording;
    [ThreadStatic] private static Tensor? _lastOutput;

    /// <summary>Inside <see cref="Forward"/>: whether this call is recorded in the graph (grad mode on and an input
    /// requires grad). When false no backward will run, so Forward must not park tensors in ctx.save_data.</summary>
    protected static bool Recording => _recording;

    /// <summary>Forward on the unpacked arguments (autograd is off here). Save what backward needs in ctx.</summary>
    protected abstract Tensor Forward(autograd.AutogradContext ctx, TPlan plan, Tensor?[] inputs);

    /// <summary>One gradient per input tensor (null where none is needed); runs under the backward guard.</summary>
    protected abstract Tensor?[] Backward(autograd.AutogradContext ctx, TPlan plan, Tensor gradOutput);

    public sealed override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (plan, inputs) = FunctionArguments.Unpack<TPlan>(ctx, vars, Name);
        NodeHousekeeping.ForwardRan(ctx);
        var y = Forward(ctx, plan, inputs);
        _lastOutput = y;
        return y;
    }

    public sealed override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        List<Tensor>? grads = null;
        Tensor? made = null;
        try
        {
            grads = SlothAutograd.GuardedBackward(Name, FunctionArguments.Call(ctx), () =>
            {
                var g = NodeHousekeeping.Materialize(ctx, gradOutput, 0, out var isNew);
                if (isNew) made = g;
                return Backward(ctx, FunctionArguments.Plan<TPlan>(ctx), g);
            });
            return grads;
        }
        finally
        {
            NodeHousekeeping.AfterBackward(ctx, [gradOutput, made], grads ?? []);
        }
    }
}
