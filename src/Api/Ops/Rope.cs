using SlothSharp.Autograd;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// Rotary position embedding with Hugging Face's rotate_half convention, <c>x * cos + rotate_half(x) * sin</c>, in one
/// fused kernel (sloth_rope) whose products and sums round to x's dtype exactly as that expression does. The backward
/// is the inverse rotation. cos and sin get no gradient. Partial rotary (Phi-3/Phi-4's <c>partial_rotary_factor</c>):
/// only the first rotaryDim features of each head turn, the rest pass through, as transformers' Phi3 writes it:
/// <c>cat([x_rot * cos + rotate_half(x_rot) * sin, x_pass], -1)</c> with <c>x_rot, x_pass = x[..., :rd], x[..., rd:]</c>.
/// </summary>
public static class Rope
{
    /// <summary>
    /// x: [B, heads, T, D] (<see cref="SlothRopeLayout.Bhtd"/>, Hugging Face's layout after transpose(1, 2)) or
    /// [B, T, heads, D] (<see cref="SlothRopeLayout.Bthd"/>, the projection output viewed per head: no transpose
    /// copy), float32/float16/bfloat16. cos, sin: [T, R], [1, T, R] or [B, T, R] (Hugging Face's position
    /// embeddings), converted to x's dtype as transformers does, with R = <paramref name="rotaryDim"/>: null for D
    /// (the whole head turns), else an even number in [2, D] (partial rotary; features R..D-1 are copied unchanged).
    /// Returns a new tensor shaped like x.
    /// </summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin, SlothRopeLayout layout = SlothRopeLayout.Bhtd,
                               int? rotaryDim = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(cos);
        ArgumentNullException.ThrowIfNull(sin);
        TensorInterop.ToSloth(x.dtype, nameof(x));
        if (x.ndim != 4) throw new ArgumentException($"x {OpChecks.Shape(x)} must be 4-D ({layout})", nameof(x));
        if (layout is not (SlothRopeLayout.Bhtd or SlothRopeLayout.Bthd))
            throw new ArgumentOutOfRangeException(nameof(layout), layout, "unknown layout");
        var (b, t, hd) = (x.shape[0], layout == SlothRopeLayout.Bhtd ? x.shape[2] : x.shape[1], x.shape[3]);
        if (rotaryDim is null && hd % 2 != 0)
            throw new ArgumentException($"head_dim {hd} of x {OpChecks.Shape(x)} must be even", nameof(x));
        if (rotaryDim is { } r && (r < 2 || r > hd || r % 2 != 0))
            throw new ArgumentOutOfRangeException(nameof(rotaryDim), rotaryDim, $"must be even and in [2, head_dim = {hd}]");
        long d = rotaryDim ?? hd;
        foreach (var (table, name) in new[] { (cos, nameof(cos)), (sin, nameof(sin)) })
        {
            TensorInterop.RequireSameDevice(x, nameof(x), table, name);
            var ok = table.ndim switch
            {
                2 => table.shape[0] == t && table.shape[1] == d,
                3 => (table.shape[0] == 1 || table.shape[0] == b) && table.shape[1] == t && table.shape[2] == d,
                _ => false,
            };
            if (!ok)
                throw new ArgumentException(
                    $"{name} {OpChecks.Shape(table)} must be [T, R], [1, T, R] or [B, T, R] with T = {t}, R = {d} ({(rotaryDim is null ? "the head_dim" : "rotaryDim")})", name);
        }
        if (cos.shape.Length != sin.shape.Length || !cos.shape.SequenceEqual(sin.shape))
            throw new ArgumentException($"sin {OpChecks.Shape(sin)} must have the shape of cos {OpChecks.Shape(cos)}", nameof(sin));
        return RopeFunction.Apply(new RopePlan(layout, d), x, cos, sin);
    }
}

/// <summary>RotaryDim: the features of each head that turn (the tables' last dimension).</summary>
internal sealed record RopePlan(SlothRopeLayout Layout, long RotaryDim);

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
            return Run(x, cos, sin, plan, inverse: false);
        }
        using (cos)
        using (sin)
            return Run(x, cos, sin, plan, inverse: false);
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, RopePlan plan, Tensor gradOutput)
    {
        var tables = ((TensorBox)ctx.get_data("tables")).Take();
        using var cos = tables[0]!;
        using var sin = tables[1]!;
        return [Run(gradOutput, cos, sin, plan, inverse: true), null, null];
    }

    private static Tensor Run(Tensor input, Tensor cos, Tensor sin, RopePlan plan, bool inverse)
    {
        var layout = plan.Layout;
        using var x = input.contiguous();
        var heads = layout == SlothRopeLayout.Bhtd ? x.shape[1] : x.shape[2];
        var seq = layout == SlothRopeLayout.Bhtd ? x.shape[2] : x.shape[1];
        var cosBatch = cos.ndim == 3 ? cos.shape[0] : 1;
        var output = empty_like(x);
        Native.Rope(TensorInterop.DataPtr(x), TensorInterop.DataPtr(cos), TensorInterop.DataPtr(sin),
            TensorInterop.ToSloth(x.dtype, "x"), layout, x.shape[0], heads, seq, x.shape[3], plan.RotaryDim, cosBatch, inverse ? 1 : 0,
            TensorInterop.DataPtr(output), TensorInterop.DeviceSelector(x), 0);
        return output;
    }
}
