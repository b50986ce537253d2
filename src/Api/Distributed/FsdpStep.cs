using SlothSharp.Losses;
using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>What one <see cref="FsdpStep.Run"/> computed. <see cref="Loss"/> and the adapter gradients are the
/// global ones (identical on every rank); the Local* counts are this rank's part.</summary>
public sealed record FsdpStepResult(double Loss, long GlobalTargets, long LocalRows, long LocalTargets);

/// <summary>
/// One data-parallel forward + backward of a <see cref="ShardedCausalLM"/> on a global batch: rank r takes rows
/// r, r + N, r + 2N, …; the causal-LM loss (hidden[:, :-1] against labels[:, 1:], through
/// <see cref="CausalLmLoss"/>) of each rank's rows is divided by ONE global count of target tokens (the
/// ranks' counts all-reduced), so the summed gradients equal those of one rank running the whole batch. After the
/// backward every adapter gradient is all-reduced (sum, one flat buffer). The optimizer step is the caller's; with
/// equal gradients on every rank the replicated adapters stay equal.
/// </summary>
public sealed class FsdpStep
{
    private readonly CrossEntropyOptions _loss;

    /// <param name="model">The sharded model with LoRA adapters.</param>
    /// <param name="lossOptions">Loss options (reduction is forced to the global mean; chunking, smoothing etc. are
    /// kept).</param>
    public FsdpStep(ShardedCausalLM model, CrossEntropyOptions? lossOptions = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Model.Lora is null)
            throw new ArgumentException("the model has no LoRA adapters to train: call AddLora before sharding", nameof(model));
        Model = model;
        _loss = (lossOptions ?? new CrossEntropyOptions()) with { Reduction = LossReduction.Mean };
    }

    public ShardedCausalLM Model { get; }

    /// <summary>
    /// Computes the global loss and leaves the global adapter gradients in each LoRA parameter's <c>grad</c>
    /// (replacing what was there). Every rank passes the same global batch: <paramref name="inputIds"/> int64 [B, T],
    /// <paramref name="attentionMask"/> [B, T] or null, <paramref name="labels"/> int64 [B, T] (ignored positions =
    /// the loss options' IgnoreIndex, −100 by default), with B ≥ the number of ranks (each rank needs a row: the
    /// forward is a sequence of collectives every rank must join).
    /// </summary>
    public FsdpStepResult Run(Tensor inputIds, Tensor? attentionMask, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(labels);
        var comm = Model.Communicator;
        var model = Model.Model;
        if (inputIds.ndim != 2) throw new ArgumentException($"inputIds must be [batch, tokens]; got [{string.Join(", ", inputIds.shape)}]", nameof(inputIds));
        if (!labels.shape.SequenceEqual(inputIds.shape))
            throw new ArgumentException($"labels must be shaped like inputIds [{string.Join(", ", inputIds.shape)}]; got [{string.Join(", ", labels.shape)}]", nameof(labels));
        if (attentionMask is not null && !attentionMask.shape.SequenceEqual(inputIds.shape))
            throw new ArgumentException($"attentionMask must be shaped like inputIds [{string.Join(", ", inputIds.shape)}]; got [{string.Join(", ", attentionMask.shape)}]", nameof(attentionMask));
        if (labels.dtype != ScalarType.Int64) throw new ArgumentException($"labels must be int64; got {labels.dtype}", nameof(labels));
        var (batch, tokens) = (inputIds.shape[0], inputIds.shape[1]);
        if (batch < comm.Size)
            throw new ArgumentException($"the global batch has {batch} rows; {comm.Size} ranks need at least one row each", nameof(inputIds));
        if (tokens < 2) throw new ArgumentException("rows need at least 2 tokens (a causal-LM target needs a previous token)", nameof(inputIds));

        using var scope = NewDisposeScope();
        var device = model.Device;
        using var rows = arange(comm.Rank, batch, comm.Size, ScalarType.Int64, device);
        var ids = inputIds.to(device).index_select(0, rows);
        var mask = attentionMask?.to(device).index_select(0, rows);
        var localLabels = labels.to(device).index_select(0, rows);

        // One normalizer for the whole global batch: the ranks' target counts, summed.
        var localTargets = localLabels.narrow(1, 1, tokens - 1).ne(_loss.IgnoreIndex).sum().to(ScalarType.Int64).reshape(1);
        var globalTargets = localTargets.clone();
        comm.AllReduce(globalTargets, ReduceOp.Sum);
        var global = globalTargets.item<long>();
        var options = _loss with { Normalizer = Math.Max(1, global) };

        var parameters = model.LoraParameters().Select(p => p.Value).ToList();
        foreach (var p in parameters) p.grad?.zero_();
        model.train();
        var hidden = model.Forward(ids, mask);
        var loss = CausalLmLoss.Compute(model, hidden, localLabels, options);
        loss.backward();

        AllReduceGradients(parameters);
        var lossSum = loss.detach().to(ScalarType.Float64).reshape(1);
        comm.AllReduce(lossSum, ReduceOp.Sum);
        return new FsdpStepResult(lossSum.item<double>(), global, rows.numel(), localTargets.item<long>());
    }

    /// <summary>Sums every adapter gradient over the ranks through one flat buffer (one collective, parameters in
    /// model order). A parameter without a gradient has none on any rank (the graph is the same everywhere): it
    /// contributes zeros and stays without one.</summary>
    private void AllReduceGradients(List<TorchSharp.Modules.Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = parameters.Select(p => p.grad).ToList();
        var flat = cat(grads.Select((g, i) => (g ?? zeros_like(parameters[i])).reshape(-1).to(ScalarType.Float32)).ToArray());
        Model.Communicator.AllReduce(flat, ReduceOp.Sum);
        long offset = 0;
        for (var i = 0; i < parameters.Count; i++)
        {
            var n = parameters[i].numel();
            if (grads[i] is { } g) g.copy_(flat.narrow(0, offset, n).view(g.shape));
            offset += n;
        }
    }
}
