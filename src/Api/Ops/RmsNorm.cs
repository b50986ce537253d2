using SlothSharp.Autograd;
using SlothSharp.Interop;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>
/// RMSNorm in one fused kernel per direction (sloth_rms_norm_forward / _backward), in either of the two forms
/// Hugging Face transformers uses:
/// <list type="bullet">
/// <item>LlamaRMSNorm (Llama, Qwen2/3 including their q/k norms, Mistral, Phi-3):
/// <c>weight * (x.float() * rsqrt(mean(x.float()^2, -1) + eps)).to(x.dtype)</c>.</item>
/// <item>GemmaRMSNorm (Gemma, Gemma 2, Gemma 3 including their q/k norms), <c>unitOffset: true</c>:
/// <c>((x.float() * rsqrt(mean(x.float()^2, -1) + eps)) * (1 + weight.float())).to(x.dtype)</c>, all in float32 and
/// rounded once (the stored weight is the offset from 1).</item>
/// </list>
/// The backward gives dX and, when the weight requires a gradient, dW accumulated in float32.
/// </summary>
public static class RmsNorm
{
    /// <summary>x: [..., H] float32/float16/bfloat16 on the CPU or CUDA (per-head q/k norms: [B, T, heads, head_dim]
    /// with a [head_dim] weight); weight: [H], same dtype and device. <paramref name="unitOffset"/>: Gemma's
    /// <c>(1 + weight)</c> form. Returns y with x's shape and dtype. Differentiable in x and weight.</summary>
    public static Tensor Apply(Tensor x, Tensor weight, double eps = 1e-6, bool unitOffset = false)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        OpChecks.FloatingSameDtype(x, nameof(x), weight, nameof(weight));
        if (x.ndim < 1 || weight.ndim != 1 || weight.shape[0] != x.shape[^1] || weight.shape[0] < 1)
            throw new ArgumentException($"weight {OpChecks.Shape(weight)} must be [H] with H = the last dimension of x {OpChecks.Shape(x)}", nameof(weight));
        if (!(eps >= 0 && double.IsFinite(eps))) throw new ArgumentOutOfRangeException(nameof(eps), eps, "must be finite and >= 0");
        return RmsNormFunction.Apply(new RmsNormPlan((float)eps, unitOffset), x, weight);
    }
}

/// <summary>How an RMSNorm output was made: <c>RmsNorm.Apply(Input, Weight, Eps, UnitOffset)</c>, Input contiguous.
/// The norm's autograd node keeps Input and Weight for its own backward anyway, so a consumer of the output that needs
/// it in backward can keep these instead and make the output again (<see cref="RmsNormFunction.Run(RmsNormPlan, Tensor, Tensor)"/> on
/// <see cref="Plan"/>: the same kernel on the same bits gives the same bits) rather than keep a second [.., H] tensor
/// alive.</summary>
internal sealed record RmsNormRecipe(Tensor Input, Tensor Weight, double Eps, bool UnitOffset)
{
    /// <summary>The plan <see cref="RmsNorm.Apply"/> made for these arguments.</summary>
    public RmsNormPlan Plan => new((float)Eps, UnitOffset);
}

/// <summary>An RMSNorm layer with a learnable weight named <c>weight</c> (Hugging Face's parameter name) running the
/// fused kernels: initialised to ones (Llama's form), or to zeros with <c>unitOffset</c> (Gemma's <c>1 + weight</c>
/// form), so that a fresh layer is the plain normalisation either way.</summary>
public sealed class RmsNormLayer : nn.Module<Tensor, Tensor>
{
    public RmsNormLayer(long hiddenSize, double eps = 1e-6, ScalarType dtype = ScalarType.Float32, Device? device = null,
                        bool unitOffset = false)
        : base(nameof(RmsNormLayer))
    {
        Eps = eps;
        UnitOffset = unitOffset;
        weight = new Parameter(unitOffset ? zeros(hiddenSize, dtype, device) : ones(hiddenSize, dtype, device));
        RegisterComponents();
    }

    public double Eps { get; }

    /// <summary>True for Gemma's <c>(1 + weight)</c> form.</summary>
    public bool UnitOffset { get; }

    // The field name is the parameter name in state_dict(): "weight".
#pragma warning disable IDE1006
    public Parameter weight;
#pragma warning restore IDE1006

    public override Tensor forward(Tensor x) => RmsNorm.Apply(x, weight, Eps, UnitOffset);
}

internal sealed record RmsNormPlan(float Eps, bool UnitOffset);

internal sealed class RmsNormFunction : SlothFunction<RmsNormFunction, RmsNormPlan>
{
    public override string Name => "SlothSharp.RmsNorm";

    protected override Tensor Forward(autograd.AutogradContext ctx, RmsNormPlan plan, Tensor?[] inputs)
    {
        var y = Run(plan, inputs[0]!, inputs[1]!, out var rstd);
        if (Recording)
        {
            ctx.save_for_backward([inputs[0]!, inputs[1]!]);
            ctx.save_data("rstd", new TensorBox(rstd.DetachFromDisposeScope()));
        }
        else rstd.Dispose();
        return y;
    }

    /// <summary>y = RMSNorm(x) through the forward kernel (a new tensor; no autograd). Forward and every recomputation
    /// from an <see cref="RmsNormRecipe"/> go through here, so they run the same kernel.</summary>
    internal static Tensor Run(RmsNormPlan plan, Tensor x, Tensor w)
    {
        var y = Run(plan, x, w, out var rstd);
        rstd.Dispose();
        return y;
    }

    /// <summary>y and the float32 reciprocal RMS of each row [rows] that backward needs (new tensors; no autograd).</summary>
    private static Tensor Run(RmsNormPlan plan, Tensor xIn, Tensor wIn, out Tensor rstd)
    {
        using var x = xIn.contiguous();
        using var w = wIn.contiguous();
        var cols = x.shape[^1];
        var rows = x.numel() / cols;
        var y = empty_like(x);
        rstd = empty(rows, ScalarType.Float32, x.device);
        Native.RmsNormForward(TensorInterop.DataPtr(x), TensorInterop.DataPtr(w), TensorInterop.ToSloth(x.dtype, "x"), rows,
            cols, plan.Eps, plan.UnitOffset ? 1 : 0, TensorInterop.DataPtr(y), TensorInterop.DataPtr(rstd), TensorInterop.DeviceSelector(x), 0);
        return y;
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, RmsNormPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        using var rstd = ((TensorBox)ctx.get_data("rstd")).Take()[0]!;
        using var x = saved[0]!.contiguous();
        using var w = saved[1]!.contiguous();
        using var dy = gradOutput.contiguous();
        var cols = x.shape[^1];
        var rows = x.numel() / cols;
        var dx = empty_like(x);
        var wantsDw = saved[1]!.requires_grad;
        if (rows == 0) return [dx, wantsDw ? zeros_like(w) : null];  // a sum over no rows
        using var dw = wantsDw ? empty(cols, ScalarType.Float32, x.device) : null;
        Native.RmsNormBackward(TensorInterop.DataPtr(dy), TensorInterop.DataPtr(x), TensorInterop.DataPtr(w),
            TensorInterop.DataPtr(rstd), TensorInterop.ToSloth(x.dtype, "x"), rows, cols, plan.UnitOffset ? 1 : 0,
            TensorInterop.DataPtr(dx),
            dw is null ? 0 : TensorInterop.DataPtr(dw), TensorInterop.DeviceSelector(x), 0);
        return [dx, dw?.to(w.dtype)];
    }
}
