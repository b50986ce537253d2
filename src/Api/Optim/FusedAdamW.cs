using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Optim;

/// <summary>
/// AdamW over many small float32 tensors (the LoRA adapters: 224 tensors, ~11M values for Llama-3.2-1B with r16 on
/// all seven projections) as a handful of element-wise ops on flat buffers. TorchSharp's <c>optim.AdamW</c> runs about
/// ten kernels per tensor (≈ 2,000 launches and 20–25 ms a step on the H100); here each parameter and its gradient are
/// views into one flat buffer each (<c>set_</c> on the parameter, a view assigned to <c>.grad</c>, into which autograd
/// accumulates in place), so a step is nine kernels whatever the number of tensors.
/// </summary>
/// <remarks>
/// The update is TorchSharp's <c>optim.AdamW</c> (torch's rule, amsgrad and maximize off), operation for operation:
/// p·(1 − lr·wd); m = β₁m + (1−β₁)g; v = β₂v + (1−β₂)g²; p += −(lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε). Element-wise ops
/// give each element the same result on a flat buffer as on its own tensor, so in float32 on the CPU the parameters
/// equal optim.AdamW's bit for bit (tested). Differences from optim.AdamW: one step count for all tensors, and a
/// parameter that got no gradient in a step is updated with a zero gradient (optim.AdamW skips it; every adapter gets a
/// gradient in a training step). Gradients are zeroed by <see cref="zero_grad"/> (in place: the views stay attached);
/// a gradient that something replaced (e.g. set to null) is copied back into the buffer at the next step.
/// </remarks>
public sealed class FusedAdamW : IDisposable
{
    private readonly Parameter[] _params;
    private readonly long[] _offsets;
    private readonly Tensor _p, _g, _m, _v;
    private readonly State[] _states;
    private double _lr;

    /// <param name="parameters">float32 tensors that require grad, all on one device, no duplicates.</param>
    /// <param name="lr">learning rate (≥ 0). All defaults are torch's.</param>
    /// <param name="beta1">first-moment decay, in [0, 1).</param>
    /// <param name="beta2">second-moment decay, in [0, 1).</param>
    /// <param name="eps">added to the denominator (≥ 0).</param>
    /// <param name="weightDecay">decoupled weight decay (≥ 0).</param>
    public FusedAdamW(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
                      double eps = 1e-8, double weightDecay = 0.01)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _params = parameters.ToArray();
        if (_params.Length == 0) throw new ArgumentException("no parameters to optimize", nameof(parameters));
        if (!(lr >= 0) || !double.IsFinite(lr)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "must be finite and >= 0");
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "must be in [0, 1)");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "must be in [0, 1)");
        if (!(eps >= 0) || !double.IsFinite(eps)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "must be finite and >= 0");
        if (!(weightDecay >= 0) || !double.IsFinite(weightDecay)) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "must be finite and >= 0");
        var device = _params[0].device;
        var seen = new HashSet<IntPtr>();
        _offsets = new long[_params.Length + 1];
        for (var i = 0; i < _params.Length; i++)
        {
            var p = _params[i] ?? throw new ArgumentException($"parameter {i} is null", nameof(parameters));
            if (p.dtype != ScalarType.Float32) throw new ArgumentException($"parameter {i} is {p.dtype}; FusedAdamW updates float32 parameters", nameof(parameters));
            if (p.device_type != device.type || p.device_index != _params[0].device_index) throw new ArgumentException($"parameter {i} is on {p.device}, parameter 0 on {device}", nameof(parameters));
            if (!p.requires_grad) throw new ArgumentException($"parameter {i} does not require grad", nameof(parameters));
            if (!seen.Add(p.Handle)) throw new ArgumentException($"parameter {i} is given twice", nameof(parameters));
            _offsets[i + 1] = _offsets[i] + p.numel();
        }
        LearningRate = lr;
        (Beta1, Beta2, Eps, WeightDecay) = (beta1, beta2, eps, weightDecay);
        var n = _offsets[^1];
        _p = empty(n, ScalarType.Float32, device).DetachFromDisposeScope();
        _g = zeros(n, ScalarType.Float32, device).DetachFromDisposeScope();
        _m = zeros(n, ScalarType.Float32, device).DetachFromDisposeScope();
        _v = zeros(n, ScalarType.Float32, device).DetachFromDisposeScope();
        _states = new State[_params.Length];
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        for (var i = 0; i < _params.Length; i++)
        {
            var p = _params[i];
            var slice = Slice(_p, i);
            slice.copy_(p);
            if (p.grad is { } old && !old.IsInvalid) Slice(_g, i).copy_(old);
            p.set_(slice);                         // the parameter now lives in the flat buffer
            p.grad = Slice(_g, i);                 // autograd accumulates into the flat gradient
            _states[i] = new State(this, Slice(_m, i).DetachFromDisposeScope(), Slice(_v, i).DetachFromDisposeScope());
        }
    }

    public double LearningRate
    {
        get => _lr;
        set => _lr = value >= 0 && double.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "must be finite and >= 0");
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }

    /// <summary>Steps taken (all tensors share it; saved and restored with the state).</summary>
    public long StepCount { get; set; }

    /// <summary>Values over all parameters.</summary>
    public long NumberOfValues => _offsets[^1];

    /// <summary>All gradients as one flat float32 tensor (a view: writes change the gradients), e.g. for one global
    /// norm.</summary>
    public Tensor FlatGradients => _g.alias();

    /// <summary>Per parameter (in the order given): its moments as views into the flat buffers.</summary>
    public IReadOnlyList<State> States => _states;

    /// <summary>Zeroes every gradient in place (one kernel).</summary>
    public void zero_grad()
    {
        using var noGrad = no_grad();
        _g.zero_().Dispose();  // zero_ hands back a second wrapper of _g
    }

    /// <summary>One AdamW step on every parameter.</summary>
    public void step()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        ReattachGradients();
        StepCount++;
        var (lr, b1, b2) = (_lr, Beta1, Beta2);
        _p.mul_(1 - lr * WeightDecay);
        var bc1 = 1 - Math.Pow(b1, StepCount);
        var bc2 = 1 - Math.Pow(b2, StepCount);
        _m.mul_(b1).add_(_g, alpha: 1 - b1);
        _v.mul_(b2).addcmul_(_g, _g, value: 1 - b2);
        var denom = (_v.sqrt() / Math.Sqrt(bc2)).add_(Eps);
        _p.addcdiv_(_m, denom, value: -(lr / bc1));
    }

    /// <summary>A gradient that is no longer our view (replaced, or set to null) goes back into the flat buffer.</summary>
    private void ReattachGradients()
    {
        var baseAddress = TensorInterop.DataPtr(_g);
        for (var i = 0; i < _params.Length; i++)
        {
            var p = _params[i];
            using var g = p.grad;
            if (g is not null && !g.IsInvalid && TensorInterop.DataPtr(g) == baseAddress + _offsets[i] * sizeof(float)
                && g.is_contiguous() && g.shape.SequenceEqual(p.shape))
                continue;
            var slice = Slice(_g, i);
            if (g is null || g.IsInvalid) slice.zero_().Dispose();
            else slice.copy_(g);
            p.grad = slice;
        }
    }

    private Tensor Slice(Tensor flat, int i) => flat.narrow(0, _offsets[i], _offsets[i + 1] - _offsets[i]).view(_params[i].shape);

    public void Dispose()
    {
        foreach (var s in _states) s.Dispose();
        _p.Dispose();
        _g.Dispose();
        _m.Dispose();
        _v.Dispose();
    }

    /// <summary>One parameter's AdamW moments (views into the optimizer's buffers; copy_ into them to restore).</summary>
    public sealed class State : IDisposable
    {
        private readonly FusedAdamW _owner;

        internal State(FusedAdamW owner, Tensor expAvg, Tensor expAvgSq) => (_owner, ExpAvg, ExpAvgSq) = (owner, expAvg, expAvgSq);

        public Tensor ExpAvg { get; }
        public Tensor ExpAvgSq { get; }

        /// <summary>The optimizer's step count (shared by every parameter).</summary>
        public long Step
        {
            get => _owner.StepCount;
            set => _owner.StepCount = value;
        }

        public void Dispose()
        {
            ExpAvg.Dispose();
            ExpAvgSq.Dispose();
        }
    }
}
