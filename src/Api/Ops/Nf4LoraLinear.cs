using SlothSharp.Autograd;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace SlothSharp.Ops;

/// <summary>
/// A frozen NF4 linear layer with an optional LoRA adapter as one autograd node:
/// <c>y = x·Wᵀ (+ b) + s·((dropout(x)·Aᵀ)·Bᵀ)</c>, computed in x's dtype with the same operations (and so the same
/// roundings) as the plain TorchSharp expression. What differs is what stays alive between forward and backward:
/// plain autograd keeps every dequantized W (the whole model in the compute dtype: ≈ 2.5 GB for Llama-3.2-1B in bf16)
/// until backward; this node dequantizes W into a temporary in forward, frees it, keeps only x (with an adapter, whose
/// dA is its one reader), the dropout mask (bool) and x·Aᵀ (r columns), and dequantizes W again in backward for
/// dX = dY·W + s·(dY·B)·A. The adapter gradients are computed in x's dtype and cast to the adapters' dtype (float32),
/// as autograd of the plain expression does.
/// </summary>
public static class Nf4LoraLinear
{
    /// <summary>
    /// x: [..., in] float32/float16/bfloat16; weight: NF4 [out, in] on x's device; bias: [out] or null (any float dtype,
    /// cast to x's); loraA [r, in] and loraB [out, r] (both or neither; usually float32 parameters, cast to x's dtype for
    /// the products); scale: the LoRA scale; keep: null or a bool/float mask shaped like x (true = kept), applied as
    /// <c>x · keep · 1/(1 − dropout)</c> to the adapter's input. Returns [..., out] in x's dtype. Differentiable in x,
    /// bias, loraA, loraB (where they require grad); the NF4 weight is frozen.
    /// </summary>
    public static Tensor Apply(Tensor x, Nf4Weight weight, Tensor? bias = null, Tensor? loraA = null, Tensor? loraB = null,
                               double scale = 1.0, Tensor? keep = null, double dropout = 0)
    {
        var plan = Validate(x, weight, bias, loraA, loraB, scale, keep, dropout);
        // The mask is kept as bool (1 byte per element) between forward and backward.
        using var mask = Nf4LoraLinear.KeptAsBool(keep);
        return Nf4LoraLinearFunction.Apply(plan, x, bias, loraA, loraB, mask, null, null);
    }

    /// <summary>
    /// <see cref="Apply"/> on an x that is <paramref name="norm"/>'s output (x must be exactly
    /// <c>RmsNorm.Apply(norm.Input, norm.Weight, norm.Eps, norm.UnitOffset)</c>): the same output and gradients bit for
    /// bit, but the node keeps the norm's input and weight (which the norm's own node keeps anyway) instead of x, and
    /// backward makes x again with the same kernel before the adapter's gradient (CausalLM.RecomputeNorms). Only the
    /// adapter needs x in backward (dA = (s·dY·B)ᵀ·(x·keep/(1−p)); the NF4 weight is frozen, so dX never does):
    /// without one this is <see cref="Apply"/>.
    /// </summary>
    internal static Tensor ApplyToNormOutput(Tensor x, RmsNormRecipe norm, Nf4Weight weight, Tensor? bias, Tensor? loraA,
                                             Tensor? loraB, double scale, Tensor? keep, double dropout)
    {
        ArgumentNullException.ThrowIfNull(norm);
        var plan = Validate(x, weight, bias, loraA, loraB, scale, keep, dropout);
        if (loraA is null) return Nf4LoraLinearFunction.Apply(plan, x, bias, null, null, null, null, null);
        ArgumentNullException.ThrowIfNull(norm.Input);
        ArgumentNullException.ThrowIfNull(norm.Weight);
        if (!norm.Input.shape.SequenceEqual(x.shape) || norm.Input.dtype != x.dtype || norm.Weight.dtype != x.dtype ||
            norm.Weight.ndim != 1 || norm.Weight.shape[0] != x.shape[^1] || !norm.Input.is_contiguous())
            throw new ArgumentException($"the norm's input {norm.Input.dtype} {OpChecks.Shape(norm.Input)} (contiguous) and weight {norm.Weight.dtype} " +
                                        $"{OpChecks.Shape(norm.Weight)} must have x's shape and dtype and be [H] (x: {x.dtype} {OpChecks.Shape(x)})", nameof(norm));
        TensorInterop.RequireSameDevice(x, nameof(x), norm.Input, "norm.Input");
        TensorInterop.RequireSameDevice(x, nameof(x), norm.Weight, "norm.Weight");
        using var mask = Nf4LoraLinear.KeptAsBool(keep);
        // Detached aliases: the storage the norm's node keeps (no new memory), saved by this node without being its
        // autograd inputs (no graph edge to the residual stream; the norm's node gives that its gradient).
        using var normInput = norm.Input.detach();
        using var normWeight = norm.Weight.detach();
        return Nf4LoraLinearFunction.Apply(plan with { InputNorm = norm.Plan }, x, bias, loraA, loraB, mask, normInput, normWeight);
    }

    /// <summary>
    /// <see cref="Apply"/> on an x that is attention's output in heads layout, <c>x = heads.transpose(1, 2).reshape(B, T,
    /// H·D)</c> with heads [B, H, T, D] (the o projection's input): the same output and gradients bit for bit, but the node
    /// keeps <paramref name="heads"/> instead of x and makes x again (a copy) in backward for the adapter's dA. Where the
    /// attention keeps its output for its own backward (SDPA's flash, cuDNN and memory-efficient kernels do), that is
    /// the [B, T, H·D] copy per layer not kept; elsewhere it is the same bytes either way. Without an adapter this is
    /// <see cref="Apply"/> (nothing of x is kept).
    /// </summary>
    internal static Tensor ApplyToHeadsOutput(Tensor x, Tensor heads, Nf4Weight weight, Tensor? bias, Tensor? loraA,
                                              Tensor? loraB, double scale, Tensor? keep, double dropout)
    {
        ArgumentNullException.ThrowIfNull(heads);
        var plan = Validate(x, weight, bias, loraA, loraB, scale, keep, dropout);
        if (loraA is null) return Nf4LoraLinearFunction.Apply(plan, x, bias, null, null, null, null, null);
        if (heads.ndim != 4 || x.ndim != 3 || heads.dtype != x.dtype || heads.shape[0] != x.shape[0] || heads.shape[2] != x.shape[1] ||
            heads.shape[1] * heads.shape[3] != x.shape[2])
            throw new ArgumentException($"heads {heads.dtype} {OpChecks.Shape(heads)} must be [B, H, T, D] with x {x.dtype} {OpChecks.Shape(x)} = [B, T, H·D] in its dtype", nameof(heads));
        TensorInterop.RequireSameDevice(x, nameof(x), heads, nameof(heads));
        using var mask = KeptAsBool(keep);
        using var kept = heads.detach();  // an alias: kept for backward, no graph edge (attention's node gives heads its gradient)
        return Nf4LoraLinearFunction.Apply(plan with { InputFromHeads = true }, x, bias, loraA, loraB, mask, kept, null);
    }

    /// <summary>A dropout mask as the nodes keep it between forward and backward: bool (1 byte per element), a new
    /// handle the caller disposes; null for none.</summary>
    internal static Tensor? KeptAsBool(Tensor? keep) => keep is null ? null : keep.dtype == ScalarType.Bool ? keep.alias() : keep.ne(0);

    /// <summary>The checks of <see cref="Apply"/> (x may be any tensor of the input's shape and dtype), and the plan.</summary>
    internal static Nf4LoraLinearPlan Validate(Tensor x, Nf4Weight weight, Tensor? bias, Tensor? loraA, Tensor? loraB,
                                               double scale, Tensor? keep, double dropout)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ObjectDisposedException.ThrowIf(weight.IsDisposed, weight);
        if (!TensorInterop.IsFloating16Or32(x.dtype))
            throw new ArgumentException($"x must be float32, float16 or bfloat16; got {x.dtype}", nameof(x));
        if (weight.Shape.Length != 2) throw new ArgumentException($"weight must be [out, in]; got [{string.Join(", ", weight.Shape)}]", nameof(weight));
        var (outF, inF) = (weight.Shape[0], weight.Shape[1]);
        if (x.ndim < 1 || x.shape[^1] != inF)
            throw new ArgumentException($"x {OpChecks.Shape(x)} must end in in_features {inF}", nameof(x));
        TensorInterop.RequireSameDevice(weight.Packed, nameof(weight), x, nameof(x));
        if (bias is not null)
        {
            if (bias.ndim != 1 || bias.shape[0] != outF || !TensorInterop.IsFloating16Or32(bias.dtype))
                throw new ArgumentException($"bias {bias.dtype} {OpChecks.Shape(bias)} must be a float [{outF}]", nameof(bias));
            TensorInterop.RequireSameDevice(x, nameof(x), bias, nameof(bias));
        }
        if ((loraA is null) != (loraB is null)) throw new ArgumentException("loraA and loraB are given together or not at all", nameof(loraB));
        if (loraA is not null)
        {
            var r = loraA.shape.Length == 2 ? loraA.shape[0] : -1;
            if (loraA.ndim != 2 || loraA.shape[1] != inF || r < 1 || !TensorInterop.IsFloating16Or32(loraA.dtype))
                throw new ArgumentException($"loraA {loraA.dtype} {OpChecks.Shape(loraA)} must be a float [r, {inF}]", nameof(loraA));
            if (loraB!.ndim != 2 || loraB.shape[0] != outF || loraB.shape[1] != r || !TensorInterop.IsFloating16Or32(loraB.dtype))
                throw new ArgumentException($"loraB {loraB.dtype} {OpChecks.Shape(loraB)} must be a float [{outF}, {r}]", nameof(loraB));
            TensorInterop.RequireSameDevice(x, nameof(x), loraA, nameof(loraA));
            TensorInterop.RequireSameDevice(x, nameof(x), loraB, nameof(loraB));
            if (!double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "must be finite");
        }
        if (keep is not null)
        {
            if (loraA is null) throw new ArgumentException("a dropout mask needs a LoRA adapter", nameof(keep));
            if (!keep.shape.SequenceEqual(x.shape))
                throw new ArgumentException($"keep {OpChecks.Shape(keep)} must have x's shape {OpChecks.Shape(x)}", nameof(keep));
            TensorInterop.RequireSameDevice(x, nameof(x), keep, nameof(keep));
            if (!(dropout >= 0 && dropout < 1)) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "must be in [0, 1)");
        }
        return new Nf4LoraLinearPlan(weight, scale, keep is null ? 1.0 : 1.0 / (1.0 - dropout));
    }
}

/// <summary>Weight: the frozen NF4 weight (not an autograd input). KeepScale: 1/(1 − dropout). InputNorm: x is this
/// RMSNorm of the norm's input and weight (inputs 5 and 6), made again in backward instead of kept; InputFromHeads: x is
/// made again from attention's [B, H, T, D] output (input 5) by transpose and reshape. Neither: x is kept.</summary>
internal sealed record Nf4LoraLinearPlan(Nf4Weight Weight, double Scale, double KeepScale, RmsNormPlan? InputNorm = null,
                                         bool InputFromHeads = false);

/// <summary>What backward needs to know of x when x itself is not kept.</summary>
internal sealed record Nf4LoraLinearInput(long[] Shape, ScalarType Dtype, bool RequiresGrad);

internal sealed class Nf4LoraLinearFunction : SlothFunction<Nf4LoraLinearFunction, Nf4LoraLinearPlan>
{
    public override string Name => "SlothSharp.Nf4LoraLinear";

    /// <summary>inputs: x, bias?, A?, B?, keep? (bool), then with plan.InputNorm the norm's input and weight, with
    /// plan.InputFromHeads attention's output heads (detached: kept for backward, no gradient).</summary>
    protected override Tensor Forward(autograd.AutogradContext ctx, Nf4LoraLinearPlan plan, Tensor?[] inputs)
    {
        var (x, bias, a, b, keep) = (inputs[0]!, inputs[1], inputs[2], inputs[3], inputs[4]);
        var y = ForwardMath(plan, x, bias, a, b, keep, out var xa);
        if (xa is not null)
        {
            if (Recording) ctx.save_data("xa", new TensorBox(xa));
            else xa.Dispose();
        }
        if (Recording)
        {
            // Inputs only: the graph holds them until this node's backward has run (no dequantized weight among them).
            // x only where backward reads it: the adapter's dA needs it (dX never does: W is frozen), unless it is
            // made again from the norm's input and weight.
            var keepX = a is not null && plan.InputNorm is null && !plan.InputFromHeads;
            ctx.save_for_backward([keepX ? x : null!, bias!, a!, b!, keep!, inputs[5]!, inputs[6]!]);
            ctx.save_data("x", new Nf4LoraLinearInput(x.shape, x.dtype, x.requires_grad));
        }
        return y;
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, Nf4LoraLinearPlan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var (bias, a, b, keep) = (saved[1], saved[2], saved[3], saved[4]);
        var input = (Nf4LoraLinearInput)ctx.get_data("x");
        using var xa = a is null ? null : ((TensorBox)ctx.get_data("xa")).Take()[0];
        // Made again only for dA, the one reader of x: the kernel of the forward on the bits the norm's node kept.
        using var remade = a is not { requires_grad: true } ? null
            : plan.InputNorm is { } norm ? RmsNormFunction.Run(norm, saved[5]!, saved[6]!)
            : plan.InputFromHeads ? RemakeFromHeads(saved[5]!, input.Shape)
            : null;
        var x = saved[0] ?? remade;
        var (dx, dBias, dA, dB) = BackwardMath(plan, x, input.Shape, input.Dtype, bias, a, b, keep, xa, gradOutput, input.RequiresGrad);
        return [dx, dBias, dA, dB, null, null, null];
    }

    /// <summary>[B, H, T, D] heads laid side by side as [B, T, H·D] (a copy), as the o projection's input was made.</summary>
    private static Tensor RemakeFromHeads(Tensor heads, long[] shape)
    {
        using var transposed = heads.transpose(1, 2);
        return transposed.reshape(shape);
    }

    /// <summary>y = x·Wᵀ (+ b) + s·((x·keep/(1−p))·Aᵀ)·Bᵀ in x's dtype; <paramref name="xa"/>: the adapter's [.., r]
    /// intermediate that backward needs (a new tensor the caller owns), null without an adapter. Returns a new tensor
    /// in the caller's dispose scope.</summary>
    internal static Tensor ForwardMath(Nf4LoraLinearPlan plan, Tensor x, Tensor? bias, Tensor? a, Tensor? b, Tensor? keep, out Tensor? xa)
    {
        using var scope = NewDisposeScope();
        var dtype = x.dtype;
        Tensor y;
        using (var w = plan.Weight.Dequantize(dtype))
            y = functional.linear(x, w, bias is null ? null : bias.dtype == dtype ? bias : bias.to(dtype));
        xa = null;
        if (a is not null)
        {
            // The plain expression, operation for operation: x·keep·(1/(1−p)), ·Aᵀ, ·Bᵀ, ·s, + y.
            var h = keep is null ? x : x * keep.to(dtype) * plan.KeepScale;
            var lin1 = functional.linear(h, a.to(dtype));
            using var lin2 = functional.linear(lin1, b!.to(dtype));
            // For s = 2^k, s·lin2 is exact, so one fused in-place add rounds exactly as (lin2·s) + y does.
            y = IsPowerOfTwo(plan.Scale) ? y.add_(lin2, plan.Scale) : y + lin2 * plan.Scale;
            xa = lin1.DetachFromDisposeScope();
        }
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>The gradients of <see cref="ForwardMath"/> for upstream <paramref name="gradOutput"/>: dX (when
    /// <paramref name="needX"/>) = dY·W + s·(dY·B)·A (· keep/(1−p)); dBias, dA, dB where the tensor requires grad, in its
    /// dtype. x (of shape <paramref name="xShape"/> and dtype <paramref name="dtype"/>) is read only for dA and may be
    /// null when A needs no gradient. New tensors in the caller's dispose scope.</summary>
    internal static (Tensor? Dx, Tensor? DBias, Tensor? DA, Tensor? DB) BackwardMath(Nf4LoraLinearPlan plan, Tensor? x,
        long[] xShape, ScalarType dtype, Tensor? bias, Tensor? a, Tensor? b, Tensor? keep, Tensor? xaSaved, Tensor gradOutput, bool needX)
    {
        using var scope = NewDisposeScope();
        var (outF, inF) = (plan.Weight.Shape[0], plan.Weight.Shape[1]);
        var dy = gradOutput.to(dtype).reshape(-1, outF);
        Tensor? dx = null, dBias = null, dA = null, dB = null;
        if (a is not null)
        {
            var xa = xaSaved!.reshape(-1, a.shape[0]);
            Tensor dxa;                                     // [N, r]
            if (IsPowerOfTwo(plan.Scale))
            {
                // Scaling by 2^k is exact, so it moves to the small products without changing a bit, and the
                // [N, out] pass of dY·s disappears (the usual alpha = 2·rank gives s = 2).
                if (b!.requires_grad) dB = dy.t().mm(xa).to(b.dtype).mul_(plan.Scale);
                dxa = dy.mm(b.to(dtype)).mul_(plan.Scale);
            }
            else
            {
                var ds = dy * plan.Scale;                   // d(lin2), in x's dtype as autograd rounds it
                if (b!.requires_grad) dB = ds.t().mm(xa).to(b.dtype);
                dxa = ds.mm(b.to(dtype));
            }
            if (a.requires_grad || needX)
            {
                var k = keep?.reshape(-1, inF).to(dtype);
                if (a.requires_grad)
                {
                    var x2 = (x ?? throw new ArgumentNullException(nameof(x), "dA needs the projection's input")).reshape(-1, inF);
                    var h = k is null ? x2 : x2 * k * plan.KeepScale;
                    dA = dxa.t().mm(h).to(a.dtype);
                }
                if (needX)
                {
                    dx = dxa.mm(a.to(dtype));
                    if (k is not null) dx = dx * plan.KeepScale * k;
                }
            }
        }
        if (needX)
        {
            // dX = dY·W (+ the adapter's part, accumulated by the GEMM itself: no extra pass over [N, in]).
            using var w = plan.Weight.Dequantize(dtype);
            dx = dx is null ? dy.mm(w) : dx.addmm_(dy, w);
        }
        if (bias is not null && bias.requires_grad) dBias = dy.sum(0, type: ScalarType.Float32).to(bias.dtype);
        dx = dx?.reshape(xShape);
        return (dx?.MoveToOuterDisposeScope(), dBias?.MoveToOuterDisposeScope(), dA?.MoveToOuterDisposeScope(), dB?.MoveToOuterDisposeScope());
    }

    internal static bool IsPowerOfTwo(double s) => s != 0 && double.IsFinite(s) && Math.ScaleB(1.0, Math.ILogB(s)) == Math.Abs(s);
}
