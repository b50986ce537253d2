using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>
/// AdamW with its state sharded over the ranks (ZeRO stage 2 for the LoRA adapters): the parameters, in order, are
/// viewed as one float32 vector of P elements split into N equal chunks (the last zero-padded); rank r owns chunk r.
/// <see cref="Step"/> takes each rank's LOCAL gradients (not yet summed), reduce-scatters them (rank r receives the
/// summed chunk r), clips by the global norm (one all-reduce of the chunks' squared norms), applies torch's AdamW rule
/// to its chunk only, and all-gathers the updated chunks into every rank's parameters. Each rank keeps 2·P/N floats
/// of moments instead of 2·P, optionally in host memory (<c>offloadState</c>: the chunk's gradient and parameters
/// travel to the CPU for the update and back). Equal to an unsharded torch AdamW on the summed gradients up to float
/// rounding (the sum's order is the communicator's).
/// </summary>
public sealed class ShardedAdamW : IDisposable
{
    private readonly Parameter[] _params;
    private readonly ICommunicator _comm;
    private readonly Tensor _expAvg;
    private readonly Tensor _expAvgSq;
    private bool _disposed;

    public ShardedAdamW(IEnumerable<Parameter> parameters, ICommunicator communicator, double beta1 = 0.9, double beta2 = 0.999,
                        double epsilon = 1e-8, double weightDecay = 0.01, bool offloadState = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(communicator);
        _params = parameters.ToArray();
        if (_params.Length == 0) throw new ArgumentException("no parameters to optimize", nameof(parameters));
        for (var i = 0; i < _params.Length; i++)
        {
            if (_params[i].dtype != ScalarType.Float32) throw new ArgumentException($"parameter {i} is {_params[i].dtype}; ShardedAdamW keeps float32 parameters (the LoRA adapters)", nameof(parameters));
            if (_params[i].device.type != _params[0].device.type) throw new ArgumentException($"parameter {i} is on {_params[i].device}, parameter 0 on {_params[0].device}", nameof(parameters));
        }
        if (!(beta1 is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "must be in [0, 1)");
        if (!(beta2 is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "must be in [0, 1)");
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "must be > 0");
        if (!(weightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "must be >= 0");
        _comm = communicator;
        (Beta1, Beta2, Epsilon, WeightDecay, OffloadState) = (beta1, beta2, epsilon, weightDecay, offloadState);
        NumElements = _params.Sum(p => p.numel());
        ChunkElements = (NumElements + communicator.Size - 1) / communicator.Size;
        ChunkStart = Math.Min(NumElements, communicator.Rank * ChunkElements);
        ChunkLength = Math.Min(ChunkElements, NumElements - ChunkStart);
        var stateDevice = offloadState ? CPU : _params[0].device;
        _expAvg = zeros(ChunkElements, ScalarType.Float32, stateDevice).DetachFromDisposeScope();
        _expAvgSq = zeros(ChunkElements, ScalarType.Float32, stateDevice).DetachFromDisposeScope();
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }
    public double WeightDecay { get; }
    public bool OffloadState { get; }

    /// <summary>P: the elements of all parameters.</summary>
    public long NumElements { get; }

    /// <summary>ceil(P / N): every rank's chunk length, padding included.</summary>
    public long ChunkElements { get; }

    /// <summary>Where this rank's chunk starts in the flat parameter vector, and how many real elements it has.</summary>
    public long ChunkStart { get; }
    public long ChunkLength { get; }

    /// <summary>Steps taken (torch's per-parameter <c>step</c>; the same for all).</summary>
    public long StepCount { get; set; }

    /// <summary>Bytes of optimizer state this rank holds (two float32 moments of its chunk).</summary>
    public long StateBytes => 2 * ChunkElements * sizeof(float);

    /// <summary>
    /// One step (a sequence of collectives: every rank calls it). Each parameter's <c>grad</c> holds this rank's local
    /// gradient (null: zeros); afterwards the parameters are updated on every rank and the grads are left as they were.
    /// Returns the global gradient norm before clipping; <paramref name="maxGradNorm"/> null or 0: no clipping
    /// (torch's clip_grad_norm_: scale by maxNorm / (norm + 1e-6) when that is below 1).
    /// </summary>
    public double Step(double learningRate, double? maxGradNorm = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!(learningRate >= 0) || !double.IsFinite(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "must be finite and >= 0");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = _params[0].device;
        var n = _comm.Size;
        var padded = ChunkElements * n;

        var grads = _params.Select(p => (p.grad ?? zeros_like(p)).reshape(-1).to(ScalarType.Float32)).ToList();
        if (padded > NumElements) grads.Add(zeros(padded - NumElements, ScalarType.Float32, device));
        var gradChunk = _comm.ReduceScatter(cat(grads.ToArray()));

        var sq = gradChunk.to(ScalarType.Float64).pow(2).sum().reshape(1);
        _comm.AllReduce(sq, ReduceOp.Sum);
        var norm = Math.Sqrt(sq.item<double>());
        if (maxGradNorm is > 0 && maxGradNorm.Value / (norm + 1e-6) < 1) gradChunk.mul_(maxGradNorm.Value / (norm + 1e-6));

        var flat = FlatParameters(padded, device);
        var paramChunk = flat.narrow(0, _comm.Rank * ChunkElements, ChunkElements).clone();
        var stateDevice = _expAvg.device;
        var g = gradChunk.to(stateDevice);
        var p = paramChunk.to(stateDevice);
        StepCount++;
        // torch.optim.AdamW (single-tensor): decoupled weight decay, then the bias-corrected Adam update.
        p.mul_(1 - learningRate * WeightDecay);
        _expAvg.lerp_(g, 1 - Beta1);
        _expAvgSq.mul_(Beta2).addcmul_(g, g, 1 - Beta2);
        var biasCorrection1 = 1 - Math.Pow(Beta1, StepCount);
        var biasCorrection2Sqrt = Math.Sqrt(1 - Math.Pow(Beta2, StepCount));
        var denom = _expAvgSq.sqrt().div_(biasCorrection2Sqrt).add_(Epsilon);
        p.addcdiv_(_expAvg, denom, -learningRate / biasCorrection1);
        // Padding stays zero (its gradient is zero; weight decay keeps zero at zero): nothing to mask.

        var full = _comm.AllGather(p.to(device));
        long offset = 0;
        foreach (var param in _params)
        {
            var count = param.numel();
            param.copy_(full.narrow(0, offset, count).view(param.shape));
            offset += count;
        }
        return norm;
    }

    private Tensor FlatParameters(long padded, Device device)
    {
        var parts = _params.Select(q => q.detach().reshape(-1)).ToList();
        if (padded > NumElements) parts.Add(zeros(padded - NumElements, ScalarType.Float32, device));
        return cat(parts.ToArray());
    }

    /// <summary>Every rank's moments concatenated (a collective), split per parameter in order: (exp_avg, exp_avg_sq)
    /// shaped like each parameter, on the parameters' device. What a checkpoint saves in the unsharded format.</summary>
    public IReadOnlyList<(Tensor ExpAvg, Tensor ExpAvgSq)> GatherState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        var device = _params[0].device;
        var m = _comm.AllGather(_expAvg.to(device));
        var v = _comm.AllGather(_expAvgSq.to(device));
        var result = new List<(Tensor, Tensor)>();
        long offset = 0;
        foreach (var param in _params)
        {
            var count = param.numel();
            result.Add((m.narrow(0, offset, count).view(param.shape).clone().MoveToOuterDisposeScope(),
                        v.narrow(0, offset, count).view(param.shape).clone().MoveToOuterDisposeScope()));
            offset += count;
        }
        return result;
    }

    /// <summary>Takes this rank's chunk of full, per-parameter moments (a checkpoint's, in parameter order; no
    /// collective).</summary>
    public void LoadState(IReadOnlyList<(Tensor ExpAvg, Tensor ExpAvgSq)> state, long step)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(state);
        if (state.Count != _params.Length) throw new ArgumentException($"{state.Count} states for {_params.Length} parameters", nameof(state));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        for (var i = 0; i < _params.Length; i++)
            if (state[i].ExpAvg.numel() != _params[i].numel() || state[i].ExpAvgSq.numel() != _params[i].numel())
                throw new ArgumentException($"state {i} has {state[i].ExpAvg.numel()}/{state[i].ExpAvgSq.numel()} elements; parameter {i} has {_params[i].numel()}", nameof(state));
        Tensor Chunk(Func<(Tensor ExpAvg, Tensor ExpAvgSq), Tensor> pick)
        {
            var parts = state.Select(s => pick(s).reshape(-1).to(ScalarType.Float32).to(_expAvg.device)).ToList();
            var padded = ChunkElements * _comm.Size;
            if (padded > NumElements) parts.Add(zeros(padded - NumElements, ScalarType.Float32, _expAvg.device));
            return cat(parts.ToArray()).narrow(0, _comm.Rank * ChunkElements, ChunkElements);
        }
        _expAvg.copy_(Chunk(s => s.ExpAvg));
        _expAvgSq.copy_(Chunk(s => s.ExpAvgSq));
        StepCount = step;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _expAvg.Dispose();
        _expAvgSq.Dispose();
    }
}
