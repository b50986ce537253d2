using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Autograd;

/// <summary>The argument layout of a SlothSharp function: the input tensors (null for an absent optional one), then
/// the plan. TorchSharp wants one gradient slot per argument, so the plan has a (null) slot too.</summary>
internal static class FunctionArguments
{
    private const string PlanKey = "SlothSharp.plan";
    private const string CallKey = "SlothSharp.call";

    /// <summary>The start of every call (see <see cref="SlothAutograd.Enter"/>), then the packed apply() arguments.</summary>
    public static object[] Enter(object plan, Tensor?[] inputs)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(inputs);
        SlothAutograd.Enter();
        return Pack(plan, inputs);
    }

    /// <summary>The apply() arguments: the inputs, then the plan.</summary>
    public static object[] Pack(object plan, Tensor?[] inputs)
    {
        var vars = new object[inputs.Length + 1];
        for (var i = 0; i < inputs.Length; i++) vars[i] = inputs[i]!;
        vars[^1] = plan;
        return vars;
    }

    public static (TPlan Plan, Tensor?[] Inputs) Unpack<TPlan>(autograd.AutogradContext ctx, object[] vars, string name) where TPlan : class
    {
        if (vars.Length == 0 || vars[^1] is not TPlan plan)
            throw new ArgumentException($"{name}: the last argument must be a {typeof(TPlan).Name} (call Apply(plan, inputs...))");
        var inputs = new Tensor?[vars.Length - 1];
        for (var i = 0; i < inputs.Length; i++)
            inputs[i] = vars[i] switch
            {
                null => null,
                Tensor t => t,
                var other => throw new ArgumentException($"{name}: argument {i} is a {other.GetType().Name}; only tensors (or null) precede the plan"),
            };
        ctx.save_data(PlanKey, plan);
        ctx.save_data(CallKey, new CallRecord(inputs.Select(t => t is not null).ToArray(), AutogradState.Current));
        return (plan, inputs);
    }

    public static CallRecord? Call(autograd.AutogradContext ctx) => ctx.get_data(CallKey) as CallRecord;

    public static TPlan Plan<TPlan>(autograd.AutogradContext ctx) where TPlan : class =>
        ctx.get_data(PlanKey) as TPlan ?? throw new InvalidOperationException("the autograd context lost its plan");
}
