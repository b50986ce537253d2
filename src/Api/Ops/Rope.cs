using SlothSharp.Autograd;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// Rotary position embedding with Hugging Face's rotate_half convention, <c>x * cos + rotate_half(x) * sin</c>, in one
/// fused kernel (sloth_rope) whose products and sums round to x's dtype exactly as that expression does. The backward
/// is the inverse rotation. cos and sin get no gradient.
/// </summary>
public static class Rope
{
    /// <summary>
    /// x: [B, heads, T, D] (<see cref="SlothRopeLayout.Bhtd"/>, Hugging Face's layout after transpose(1, 2)) or
    /// [B, T, heads, D] (<see cref="SlothRopeLayout.Bthd"/>, the projection output viewed per head: no transpose
    /// copy), float32/float16/bfloat16. cos, sin: [T, D], [1, T, D] or [B, T, D] (Hugging Face's position
    /// embeddings), converted to x's dtype as transformers does. Returns a new tensor shaped like x.
    /// </summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin, SlothRopeLayout layout = SlothRopeLayout.Bhtd)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(cos);
        ArgumentNullException.ThrowIfNull(sin);
        TensorInterop.ToSloth(x.dtype, nameof(x));
        if (x.ndim != 4) throw new ArgumentException($"x {OpChecks.Shape(x)} must be 4-D ({layout})", nameof(x));
        if (layout is not (SlothRopeLayout.Bhtd or SlothRopeLayout.Bthd))
            throw new ArgumentOutOfRangeException(nameof(layout), layout, "unknown layout");
        var (b, t, d) = (x.shape[0], layout == SlothRopeLayout.Bhtd ? x.shape[2] : x.shape[1], x.shape[3]);
        if (d % 2 != 0) throw new ArgumentException($"head_dim {d} of x {OpChecks.Shape(x)} must be even", nameof(x));
        foreach (var (table, name) in new[] { (cos, nameof(cos)), (sin, nameof(sin)) })
        {
            TensorInterop.RequireSameDevice(x, nameof(x), table, name);
            var ok = table.ndim switch
            {
                2 => table.shape[0] == t && table.shape[1] == d,
                3 => (table.shape[0] == 1 || table.shape[0] == b) && table.shape[1] == t && table.shape[2] == d,
                _ => false,
            };
            if (!ok) throw new ArgumentException($"{name} {OpChecks.Shape(table)} must be [T, D], [1, T, D] or [B, T, D] with T = {t}, D = {d}", name);
        }
        if (cos.shape.Length != sin.shape.Length || !cos.shape.SequenceEqual(sin.shape))
            throw new ArgumentException($"sin {OpChecks.Shape(sin)} must have the shape of cos {OpChecks.Shape(cos)}", nameof(sin));
        return RopeFunction.Apply(new RopePlan(layout), x, cos, sin);
    }
}

internal sealed record RopePlan(SlothRopeLayout Layout);

internal sealed class RopeFunction : SlothFunction<RopeFunction, RopePlan>
{
    public override string Name => "SlothSharp.Rope";

    protected override Tensor Forward(autograd.AutogradContext ctx, RopePlan plan, Tensor?[] inputs)
    {
        var x = inputs[0]!;
        var cos = inputs[1]!.to(x.dtype).contiguous();
        var sin = inputs[2]!.to(x.dtype).contiguous();
        if (Recording)
        {
            ctx.save_data("tables", new TensorBox(cos.DetachFromDisposeScope(), sin.DetachFromDisposeScope()));
            return Run(x, cos, sin, plan.Layout, inverse: false);
        }
        using (cos)
        using (sin)
            return Run(x, cos, sin, plan.Layout, inverse: false);
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, RopePlan plan, Tensor gradOutput)
    {
        var tables = ((TensorBox)ctx.get_data("tables")).Take();
        using var cos = tables[0]!;
        using var sin = tables[1]!;
        return [Run(gradOutput, cos, sin, plan.Layout, inverse: true), null, null];
    }

    private static Tensor Run(Tensor input, Tensor cos, Tensor sin, SlothRopeLayout layout, bool inverse)
    {
        using var x = input.contiguous();
        var heads = layout == SlothRopeLayout.Bhtd ? x.shape[1] : x.shape[2];
        var seq = layout == SlothRopeLayout.Bhtd ? x.shape[2] : x.shape[1];
        var cosBatch = cos.ndim == 3 ? cos.shape[0] : 1;
        var output = empty_like(x);
        Native.Rope(TensorInterop.DataPtr(x), TensorInterop.DataPtr(cos), TensorInterop.DataPtr(sin),
            TensorInterop.ToSloth(x.dtype, "x"), layout, x.shape[0], heads, seq, x.shape[3], cosBatch, inverse ? 1 : 0,
            TensorInterop.DataPtr(output), TensorInterop.DeviceSelector(x), 0);
        return output;
    }
}
