using SlothSharp.Losses;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The naive path the losses are checked against: full logits, float32 upcast, TorchSharp's own
/// cross_entropy and ordinary autograd.</summary>
internal static class LossReference
{
    public static Tensor CrossEntropy(Tensor x, Tensor w, Tensor? b, Tensor y, CrossEntropyOptions o)
    {
        var logits = nn.functional.linear(x, w, b).to(ScalarType.Float32).reshape(-1, w.shape[0]) * o.LogitScale;
        if (o.Softcap > 0) logits = (logits / o.Softcap).tanh() * o.Softcap;
        var labels = y.reshape(-1);
        var perRow = nn.functional.cross_entropy(logits, labels, ignore_index: o.IgnoreIndex,
            reduction: nn.Reduction.None, label_smoothing: o.LabelSmoothing);
        var valid = labels.ne(o.IgnoreIndex);
        if (o.ZLoss > 0) perRow = perRow + where(valid, logits.logsumexp(-1).square(), zeros_like(perRow)) * o.ZLoss;
        return Reduce(perRow, valid, o.Reduction, o.Normalizer, y.shape);
    }

    public static Tensor Reduce(Tensor perRow, Tensor valid, LossReduction reduction, double? normalizer, long[] shape) => reduction switch
    {
        LossReduction.None => perRow.reshape(shape),
        LossReduction.Sum => perRow.sum(),
        _ => perRow.sum() / (normalizer ?? Math.Max(1, valid.sum().item<long>())),
    };

    /// <summary>(hidden, weight, bias, labels) with some ignored rows; leaves require grad.</summary>
    public static (Tensor X, Tensor W, Tensor B, Tensor Y) Problem(long[] lead, long h, long v, ScalarType dtype, Device device, ulong seed, double ignoreFraction = 0.2)
    {
        var gen = new Generator(seed);
        var x = (randn([.. lead, h], generator: gen)).to(dtype).to(device).requires_grad_();
        var w = (randn([v, h], generator: gen) * (1.0 / Math.Sqrt(h))).to(dtype).to(device).requires_grad_();
        var b = (randn([v], generator: gen) * 0.1).to(dtype).to(device).requires_grad_();
        var y = randint(0, v, lead, generator: gen);
        var drop = rand(lead, generator: gen).lt(ignoreFraction);
        y = where(drop, full_like(y, -100), y).to(device);
        return (x, w, b, y);
    }

    public static Tensor? Grad(Tensor t) => t.grad is null ? null : t.grad.detach().clone();

    public static void ZeroGrads(params Tensor[] ts)
    {
        foreach (var t in ts) t.grad?.zero_();
    }
}
