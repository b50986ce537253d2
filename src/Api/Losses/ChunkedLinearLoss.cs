using SlothSharp.Autograd;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>
/// A loss on one chunk of logits. logits: float32 [rows, V] (already upcast; differentiable in backward);
/// targets: the matching rows of the targets tensor. Returns either a scalar (the chunk's SUM) or one value per row [rows].
/// </summary>
public delegate Tensor ChunkLoss(Tensor logits, Tensor targets);

/// <summary>Options of <see cref="ChunkedLinearLoss.Apply"/>.</summary>
public sealed record ChunkedLossOptions : ChunkOptions
{
    public LossReduction Reduction { get; init; } = LossReduction.Mean;

    /// <summary>With Mean: the divisor (gradient accumulation). Default: the number of rows whose target differs from
    /// <see cref="IgnoreIndex"/> when targets are int64 labels of the leading shape, else all rows.</summary>
    public double? Normalizer { get; init; }

    /// <summary>Label value that Mean does not count (for int64 label targets).</summary>
    public long IgnoreIndex { get; init; } = -100;
}

/// <summary>
/// y = f(X·Wᵀ + b) for an LM head whose logits (N × V) are too large to hold. Forward runs row chunks without
/// autograd and keeps only f's outputs; backward recomputes each chunk's logits, lets autograd differentiate f on them
/// (no hand-written derivative), and accumulates dX into its rows, dW and db. Inputs that need no gradient get none
/// (a frozen head computes no dW). CPU and CUDA, float32/float16/bfloat16; the loss math runs in float32 per chunk.
/// </summary>
public static class ChunkedLinearLoss
{
    /// <summary>
    /// hidden: [N, H] or [B, T, H]; weight: [V, H] (same dtype and device); bias: [V] or null; targets: leading dims of
    /// hidden (e.g. int64 labels [N] / [B, T], or teacher hidden states [N, Ht]). Returns a scalar for Mean/Sum, or
    /// hidden's leading shape for None (f must then return per-row values).
    /// </summary>
    public static Tensor Apply(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets, ChunkLoss loss, ChunkedLossOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(loss);
        options ??= new ChunkedLossOptions();
        var (n, h, v) = LossShapes.Check(hidden, weight, bias, targets, targetsAreLabels: false);
        LossShapes.CheckNormalizer(options.Reduction, options.Normalizer);
        var rowsPerChunk = options.RowsPerChunk(v);
        var lead = hidden.shape[..^1];
        var x = hidden.reshape(n, h);
        var t = targets.reshape([n, .. targets.shape[lead.Length..]]);
        double normalizer = 1;
        if (options.Reduction == LossReduction.Mean)
        {
            if (options.Normalizer is { } given) normalizer = given;
            else if (targets.dtype == ScalarType.Int64 && targets.ndim == lead.Length) normalizer = IgnoredRows.Count(t, options.IgnoreIndex);
            else normalizer = n;
        }
        var plan = new Plan(loss, options.Reduction, normalizer, rowsPerChunk, lead,
            hidden.requires_grad, weight.requires_grad, bias?.requires_grad ?? false);
        return ChunkedLinearLossFunction.Apply(plan, new HeadInputs(x, weight, bias, t).ToArray());
    }

    /// <summary>Cross-entropy through the generic path (same options and results as <see cref="FusedLinearCrossEntropy"/>).</summary>
    public static Tensor CrossEntropy(Tensor hidden, Tensor weight, Tensor? bias, Tensor labels, CrossEntropyOptions? options = null)
    {
        options ??= new CrossEntropyOptions();
        options.Validate();
        LossShapes.Check(hidden, weight, bias, labels, targetsAreLabels: true);
        LossShapes.CheckLabelRange(labels, weight.shape[0], options.IgnoreIndex);
        return Apply(hidden, weight, bias, labels, ChunkLosses.CrossEntropy(options), new ChunkedLossOptions
        {
            Reduction = options.Reduction,
            Normalizer = options.Normalizer,
            IgnoreIndex = options.IgnoreIndex,
            ChunkRows = options.ChunkRows,
            ChunkBytes = options.ChunkBytes,
        });
    }

    internal sealed record Plan(ChunkLoss Loss, LossReduction Reduction, double Normalizer, long RowsPerChunk,
                                long[] LeadShape, bool NeedX, bool NeedW, bool NeedB)
    {
        public bool PerRow { get; set; }
    }
}

internal sealed class ChunkedLinearLossFunction : SlothFunction<ChunkedLinearLossFunction, ChunkedLinearLoss.Plan>
{
    public override string Name => "SlothSharp.ChunkedLinearLoss";

    /// <summary>inputs: x [N, H], w [V, H], b [V] or null, t [N, ...] (the targets).</summary>
    protected override Tensor Forward(autograd.AutogradContext ctx, ChunkedLinearLoss.Plan plan, Tensor?[] inputs)
    {
        var (x, w, b, t) = HeadInputs.Of(inputs);
        var n = x.shape[0];
        var parts = new List<Tensor>();
        bool? perRow = null;
        for (long s = 0; s < n; s += plan.RowsPerChunk)
        {
            // One scope per chunk: each chunk's logits are freed before the next chunk's are made.
            using (var scope = NewDisposeScope())
            {
                var r = Math.Min(plan.RowsPerChunk, n - s);
                var logits = nn.functional.linear(x.narrow(0, s, r), w, b).to(ScalarType.Float32);
                var value = plan.Loss(logits, t.narrow(0, s, r));
                var isRow = CheckChunkOutput(value, r);
                if (perRow is { } p && p != isRow) throw new InvalidOperationException("the chunk loss returned a scalar for one chunk and per-row values for another");
                perRow = isRow;
                parts.Add(value.to(ScalarType.Float32).detach().MoveToOuterDisposeScope());
            }
        }
        plan.PerRow = perRow ?? false;
        if (plan.Reduction == LossReduction.None && !plan.PerRow)
            throw new InvalidOperationException("LossReduction.None needs a chunk loss that returns one value per row");
        new HeadInputs(x, w, b, t).SaveForBackward(ctx);
        using var all = NewDisposeScope();
        Tensor result;
        if (plan.Reduction == LossReduction.None) result = cat(parts, 0).reshape(plan.LeadShape);
        else
        {
            var total = parts.Count == 0 ? zeros([], ScalarType.Float32, x.device) : stack(parts.Select(p => p.sum()).ToList()).sum();
            // Mean over zero counted rows is 0 (total is 0 then), not NaN.
            result = plan.Reduction == LossReduction.Mean ? total / Math.Max(plan.Normalizer, 1e-30) : total;
        }
        foreach (var p in parts) p.Dispose();
        return result.MoveToOuterDisposeScope();
    }

    private static bool CheckChunkOutput(Tensor value, long rows)
    {
        if (value.numel() == 1 && value.ndim == 0) return false;
        if (value.ndim == 1 && value.shape[0] == rows) return true;
        throw new InvalidOperationException($"a chunk loss must return a scalar (the chunk's sum) or [rows] = [{rows}]; got [{string.Join(", ", value.shape)}]");
    }

    protected override Tensor?[] Backward(autograd.AutogradContext ctx, ChunkedLinearLoss.Plan plan, Tensor gradOutput)
    {
        using var saved = SavedTensors.Of(ctx);
        var (x, w, b, t) = HeadInputs.Of(saved);
        var n = x.shape[0];
        Tensor? dx = null, dw = null, db = null;
        using (var scope = NewDisposeScope())
        {
            if (plan.NeedX) dx = zeros_like(x).MoveToOuterDisposeScope();
            if (plan.NeedW) dw = zeros_like(w).MoveToOuterDisposeScope();
            if (plan.NeedB) db = zeros(w.shape[0], ScalarType.Float32, w.device).MoveToOuterDisposeScope();
            var scale = plan.Reduction == LossReduction.Mean ? (plan.Normalizer == 0 ? 0 : 1.0 / plan.Normalizer) : 1.0;
            var g = gradOutput.to(ScalarType.Float32);
            for (long s = 0; s < n; s += plan.RowsPerChunk)
            {
                using var chunkScope = NewDisposeScope();
                var r = Math.Min(plan.RowsPerChunk, n - s);
                var xc = x.narrow(0, s, r);
                Tensor logits;
                using (no_grad()) logits = nn.functional.linear(xc, w, b).to(ScalarType.Float32);
                logits = logits.detach().requires_grad_(true);
                Tensor value;
                using (enable_grad()) value = plan.Loss(logits, t.narrow(0, s, r));
                Tensor upstream = plan.Reduction == LossReduction.None
                    ? g.flatten().narrow(0, s, r)
                    : plan.PerRow ? (g * scale).expand(r) : g * scale;
                var dz = autograd.grad([value], [logits], [upstream.to(value.dtype)])[0].to(w.dtype);
                if (dx is not null) dx.narrow(0, s, r).copy_(dz.mm(w));
                dw?.addmm_(dz.t(), xc);
                db?.add_(dz.to(ScalarType.Float32).sum(dim: 0));
            }
        }
        var dbOut = db?.to(w.dtype);
        db?.Dispose();
        return [dx, dw, dbOut, null];
    }
}
