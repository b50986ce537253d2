using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>
/// FSDP-style sharding of a QLoRA <see cref="CausalLM"/> over the ranks of an <see cref="ICommunicator"/>:
/// each rank keeps 1/N of every NF4 decoder projection (packed bytes and absmax codes, split on quantization-block
/// boundaries, see <see cref="Nf4BlockShard"/>). A decoder layer's weights are all-gathered just before the layer
/// computes — in the forward and again when gradient checkpointing recomputes it in backward — and freed as soon as
/// its output exists; the backward itself needs only what the autograd graph kept. Embeddings, norms, the LM head,
/// biases and the LoRA adapters stay whole on every rank (the adapters replicated: <see cref="BroadcastAdapters"/>
/// makes them equal to rank 0's).
/// <para>The wrapped model keeps its public API: <c>Forward</c>, <c>Logits</c>, <c>LoraParameters</c> work as
/// before, but each forward is a sequence of collectives, so every rank must run the same forwards (same batch
/// shape) in the same order. Weights read directly (<c>state_dict</c>, <c>MergedDenseWeights</c>) are empty while
/// sharded: read them inside <see cref="GatherAll"/>. Train with gradient checkpointing on to keep the memory
/// saving: without it the graph keeps every layer's dequantized weights until backward.</para>
/// </summary>
public sealed class ShardedCausalLM : IDisposable
{
    private readonly Layer[] _layers;
    private bool _disposed;

    /// <summary>Shards <paramref name="model"/> (NF4, loaded identically on every rank) over
    /// <paramref name="communicator"/>'s ranks; a collective-free, local operation. The model is changed in place and
    /// must not be used without this wrapper until <see cref="Unshard"/>.</summary>
    public ShardedCausalLM(CausalLM model, ICommunicator communicator) : this(model, communicator, null)
    {
    }

    private ShardedCausalLM(CausalLM model, ICommunicator communicator, Dictionary<string, (Tensor Packed, Tensor Codes)>? preloaded)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(communicator);
        if (!model.IsQuantized)
            throw new ArgumentException($"{model.SourceDirectory}: ShardedCausalLM shards NF4 decoder weights; load the model with LoadOptions.Quantize = true", nameof(model));
        var layers = model.Model.Layers;
        if (layers.Any(l => l.AroundCompute is not null))
            throw new InvalidOperationException("this model is sharded already (a decoder layer has a compute hook)");
        Model = model;
        Communicator = communicator;
        // The fused kernels stay. The fused NF4 + LoRA node dequantizes its weight again in backward: with gradient
        // checkpointing the recomputed layer's backward runs inside its own gather (CheckpointedLayerFunction holds it),
        // so that works on sharded weights; without checkpointing the layer's bytes are freed before backward, so those
        // projections use the plain path there, whose graph keeps the dequantized weights.
        if (model.UseFusedKernels) model.InstallKernels(new ShardedKernels(model, model.FusedKernelSet));
        _layers = new Layer[layers.Length];
        try
        {
            for (var i = 0; i < layers.Length; i++)
            {
                var index = i;
                var weights = layers[i].Projections
                    .Where(p => p.IsQuantized)
                    .Select(p =>
                    {
                        var name = $"model.layers.{index}.{p.GetName()}";
                        (Tensor, Tensor)? shard = null;
                        if (preloaded is not null && preloaded.Remove(name, out var s)) shard = s;
                        return new ShardedNf4Weight(name, p, communicator.Rank, communicator.Size, shard);
                    })
                    .ToArray();
                _layers[i] = new Layer(weights);
            }
        }
        catch
        {
            foreach (var l in _layers) l?.Dispose();
            throw;
        }
        for (var i = 0; i < layers.Length; i++)
        {
            var index = i;
            layers[i].AroundCompute = () => Gather(index);
        }
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint as this rank's shard (a local operation, no collective): each bnb-4bit NF4
    /// decoder weight is read on the CPU (one at a time), this rank's blocks are copied to
    /// <paramref name="options"/>' device, and the full weight on the device is only a placeholder freed before the
    /// next one is read, so the device never holds more than the shards plus one weight (the caching allocator reuses
    /// the placeholder's block). A dense checkpoint quantized on load is sharded after loading (full size until then).
    /// The returned wrapper owns the model: disposing it disposes the model. Every rank must load the same files.
    /// <paramref name="configure"/>: called on the loaded model before it is sharded, for the choices a sharded model
    /// refuses to change (<see cref="CausalLM.RecomputeAttention"/>, <see cref="CausalLM.RecomputeNorms"/>).
    /// </summary>
    public static ShardedCausalLM LoadPretrained(string dir, LoadOptions options, ICommunicator communicator,
                                                 Action<CausalLM>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(communicator);
        if (!options.Quantize) throw new ArgumentException("ShardedCausalLM shards NF4 decoder weights: LoadOptions.Quantize must be true", nameof(options));
        var shards = new Dictionary<string, (Tensor Packed, Tensor Codes)>();
        var previous = options.PlaceNf4;
        options.PlaceNf4 = (key, cpu, device) =>
        {
            const string suffix = ".weight";
            var name = key.EndsWith(suffix, StringComparison.Ordinal) ? key[..^suffix.Length] : key;
            // Checkpoint key model.layers.i.self_attn.q_proj → the name the projections go by: model.layers.i.q_proj.
            var parts = name.Split('.');
            if (parts is ["model", "layers", var layer, _, var proj]) name = $"model.layers.{layer}.{proj}";
            shards[name] = ShardedNf4Weight.ShardOf(cpu, communicator.Rank, communicator.Size, device);
            using var scope = NewDisposeScope();
            // Placeholders of the full size (uninitialized, never read): freed as soon as the wrapper is built.
            var t = cpu.Tensors.Select(x => x.Spec == Nf4TensorSpec.Packed || x.Spec == Nf4TensorSpec.Absmax
                ? empty(x.Tensor.numel(), ScalarType.Byte, device)
                : x.Tensor.to(device)).ToArray();
            var placed = Nf4Weight.FromState(cpu.State, t[Slot(Nf4TensorSpec.Packed)], t[Slot(Nf4TensorSpec.Absmax)],
                t[Slot(Nf4TensorSpec.CodeTable)], t[Slot(Nf4TensorSpec.NestedAbsmax)], t[Slot(Nf4TensorSpec.NestedCodeMap)]);
            placed.MoveToOuterDisposeScope();
            return placed;
        };
        CausalLM? model = null;
        try
        {
            model = CausalLM.FromPretrained(dir, options);
            configure?.Invoke(model);
            var sharded = new ShardedCausalLM(model, communicator, shards) { _ownsModel = true };
            foreach (var (packed, codes) in shards.Values)
            {
                packed.Dispose();  // a weight the model did not take (none expected)
                codes.Dispose();
            }
            return sharded;
        }
        catch
        {
            model?.Dispose();
            foreach (var (packed, codes) in shards.Values)
            {
                packed.Dispose();
                codes.Dispose();
            }
            throw;
        }
        finally
        {
            options.PlaceNf4 = previous;
        }
    }

    private static int Slot(Nf4TensorSpec spec) => ((IList<Nf4TensorSpec>)Nf4TensorSpec.All).IndexOf(spec);

    private bool _ownsModel;

    public CausalLM Model { get; }
    public ICommunicator Communicator { get; }
    public int NumLayers => _layers.Length;

    /// <summary>Bytes of NF4 decoder weights (packed codes and absmax codes) this rank keeps, padding included.</summary>
    public long ShardBytes => _layers.Sum(l => l.Weights.Sum(w => w.ShardBytes));

    /// <summary>The same tensors' bytes unsharded (what one unsharded rank holds).</summary>
    public long FullBytes => _layers.Sum(l => l.Weights.Sum(w => w.FullBytes));

    /// <summary>Whether layer <paramref name="layer"/>'s full weights are present now.</summary>
    public bool IsGathered(int layer) => Check(layer).Weights.All(w => w.IsGathered);

    /// <summary>
    /// Prefetch: when a layer is gathered, the layer expected next (the following one in a forward, the previous one
    /// in a backward's recomputation) is all-gathered while the current one computes, and installed when it is asked
    /// for (at most two layers' full weights exist at a time; a prefetched layer is freed after its use like any
    /// other). Every rank predicts the same sequence, so the collectives stay in the same order; a wrong prediction
    /// is drained (waited for and freed) before the next collective. With <see cref="InProcessCommunicator"/> the
    /// gather runs on a background task. With <see cref="NcclCommunicator"/> it runs on a side CUDA stream: the
    /// receive buffers are allocated on the compute stream (TorchSharp's legacy default stream), an event recorded
    /// there after them makes the side stream wait for everything queued before (so a buffer the caching allocator
    /// hands back is no longer read by earlier kernels), the all-gathers are queued on the side stream followed by a
    /// second event, and the compute stream waits for that event before the layer is installed; the buffers are
    /// freed only after that wait, so their reuse is ordered after the gather. Setting it true with NCCL creates the
    /// stream and events (<see cref="SlothSharp.Interop.SlothUnsupportedException"/> as a
    /// <see cref="NotSupportedException"/> when libslothsharp has no CUDA). Call <see cref="DrainPrefetch"/> before
    /// issuing other collectives on this communicator while a forward or backward is half done.
    /// </summary>
    public bool Prefetch
    {
        get => _prefetch;
        set
        {
            if (value && Communicator is not (InProcessCommunicator or NcclCommunicator))
                throw new NotSupportedException($"ShardedCausalLM.Prefetch needs a communicator whose collectives can run beside the computation " +
                    $"(InProcessCommunicator or NcclCommunicator); {Communicator.GetType().Name} is neither");
            if (value && Communicator is NcclCommunicator nccl && _side is null) CreateSideStream(nccl.Device);
            if (!value) DrainPrefetch();
            _prefetch = value;
        }
    }

    private void CreateSideStream(int device)
    {
        CudaStream? stream = null;
        CudaEvent? computeReady = null;
        try
        {
            stream = CudaStream.Create(device);
            computeReady = CudaEvent.Create(device);
            var gathered = CudaEvent.Create(device);
            _side = (stream, computeReady, gathered);
        }
        catch (SlothSharp.Interop.SlothException e)
        {
            computeReady?.Dispose();
            stream?.Dispose();
            throw new NotSupportedException($"ShardedCausalLM.Prefetch over NCCL needs a side CUDA stream and events: {e.Message}", e);
        }
    }

    private bool _prefetch;
    private int _lastGathered = -1;
    private (int Layer, Func<(Tensor Packed, Tensor Codes)[]> Take)? _pending;
    private (CudaStream Stream, CudaEvent ComputeReady, CudaEvent Gathered)? _side;

    /// <summary>How many prefetched layers were used / thrown away (a wrong guess); for tests and tuning.</summary>
    public (int Used, int Wasted) PrefetchStats => (_prefetchUsed, _prefetchWasted);

    private int _prefetchUsed, _prefetchWasted;

    /// <summary>Waits for an in-flight prefetch and frees it (its collectives are complete afterwards).</summary>
    public void DrainPrefetch()
    {
        if (_pending is not { } p) return;
        _pending = null;
        _prefetchWasted++;
        foreach (var (packed, codes) in p.Take())
        {
            packed.Dispose();
            codes.Dispose();
        }
    }

    /// <summary>All-gathers layer <paramref name="layer"/>'s weights (a collective) until the result is disposed. Nested
    /// calls share one gather: only the outermost frees.</summary>
    public IDisposable Gather(int layer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var l = Check(layer);
        if (l.Users++ == 0)
        {
            try
            {
                if (_pending is { } p && p.Layer == layer)
                {
                    _pending = null;
                    _prefetchUsed++;
                    var gathered = p.Take();
                    for (var i = 0; i < l.Weights.Length; i++) l.Weights[i].Install(gathered[i].Packed, gathered[i].Codes);
                }
                else
                {
                    DrainPrefetch();
                    foreach (var w in l.Weights) w.Gather(Communicator);
                }
                if (_prefetch) StartPrefetch(layer);
            }
            catch
            {
                l.Users--;
                foreach (var w in l.Weights) w.Free();
                throw;
            }
        }
        return new Release(l);
    }

    /// <summary>Starts gathering the layer expected after <paramref name="layer"/>: going up → the next; going down
    /// (or the same layer again: a backward recomputing the forward's last layer) → the previous. Layer 0 starts a
    /// forward (→ up), except where a checkpointed training backward comes down to it: that backward ends there, and
    /// nothing may be in flight when the caller's own collectives (the gradient all-reduce) follow.</summary>
    private void StartPrefetch(int layer)
    {
        var recomputing = Model.GradientCheckpointing && Model.training;
        var up = layer == 0 ? !(_lastGathered > 0 && recomputing) : layer > _lastGathered;
        _lastGathered = layer;
        var next = up ? layer + 1 : layer - 1;
        if (next < 0 || next >= _layers.Length || _layers[next].Users > 0) return;
        var weights = _layers[next].Weights;
        if (Communicator is NcclCommunicator nccl)
        {
            _pending = (next, StartSideStreamGather(nccl, weights));
            return;
        }
        var comm = Communicator;
        var task = Task.Run(() =>
        {
            var result = new (Tensor, Tensor)[weights.Length];
            for (var i = 0; i < weights.Length; i++) result[i] = weights[i].GatherTensors(comm);
            return result;
        });
        _pending = (next, () => task.GetAwaiter().GetResult());
    }

    /// <summary>Queues the all-gathers of <paramref name="weights"/> on the side stream (see <see cref="Prefetch"/>
    /// for the ordering) and returns what installs them: the compute stream's wait for the gather's event.</summary>
    private Func<(Tensor Packed, Tensor Codes)[]> StartSideStreamGather(NcclCommunicator nccl, ShardedNf4Weight[] weights)
    {
        var (stream, computeReady, gathered) = _side ?? throw new InvalidOperationException("the side stream was not created");
        var device = nccl.Device;
        var buffers = new List<(Tensor PackedFull, Tensor CodesFull)>();
        try
        {
            // 1. Receive buffers from the caching allocator, on the compute stream, then the side stream waits for
            //    everything queued there so far (kernels still reading a reused block included).
            foreach (var w in weights) buffers.Add(w.AllocateGathered(nccl.Size));
            computeReady.Record(CudaStream.LegacyDefault);
            CudaStream.Wait(device, stream.Handle, computeReady);
            // 2. The all-gathers on the side stream, then the event the compute stream will wait for.
            for (var i = 0; i < weights.Length; i++) weights[i].GatherOnStream(nccl, buffers[i], stream.Handle);
            gathered.Record(stream.Handle);
        }
        catch
        {
            // Whatever was queued must finish before the buffers can be reused by the compute stream.
            try
            {
                gathered.Record(stream.Handle);
                CudaStream.Wait(device, CudaStream.LegacyDefault, gathered);
            }
            catch (SlothSharp.Interop.SlothException)
            {
                // the device is in error already; the original exception says why
            }
            foreach (var (p, c) in buffers)
            {
                p.Dispose();
                c.Dispose();
            }
            throw;
        }
        return () =>
        {
            // 3. The compute stream waits for the gather (the host does not); the buffers are freed only after this,
            //    by the layer's release on the compute stream, so their reuse is ordered after the gather.
            CudaStream.Wait(device, CudaStream.LegacyDefault, gathered);
            var result = new (Tensor Packed, Tensor Codes)[weights.Length];
            for (var i = 0; i < weights.Length; i++) result[i] = weights[i].Trim(buffers[i]);
            return result;
        };
    }

    /// <summary>Every layer gathered (for state_dict, merging, saving) until the result is disposed.</summary>
    public IDisposable GatherAll()
    {
        var held = new List<IDisposable>();
        try
        {
            for (var i = 0; i < _layers.Length; i++) held.Add(Gather(i));
        }
        catch
        {
            foreach (var h in held) h.Dispose();
            throw;
        }
        return new ReleaseAll(held);
    }

    /// <summary>Overwrites every rank's LoRA adapters with rank <paramref name="root"/>'s (a collective), so the
    /// replicas start equal whatever each rank's initialization was.</summary>
    public void BroadcastAdapters(int root = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var (_, p) in Model.LoraParameters()) Communicator.Broadcast(p, root);
    }

    /// <summary>Gathers every layer for good and removes the hooks (a collective): the model is whole again.</summary>
    public void Unshard()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        DrainPrefetch();
        foreach (var l in _layers)
            if (l.Users == 0)
                foreach (var w in l.Weights) w.Gather(Communicator);
        foreach (var l in _layers) l.Users = int.MaxValue / 2;  // never freed again
        Detach();
    }

    /// <summary>Removes the hooks and drops this rank's shards (no collective). Unless <see cref="Unshard"/> ran, the
    /// model's decoder weights are empty afterwards: dispose the model too.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        Detach();
        if (_ownsModel) Model.Dispose();
    }

    private void Detach()
    {
        try
        {
            DrainPrefetch();
        }
        catch (Exception)
        {
            // a failed prefetch (the group was aborted): nothing left to free
        }
        _disposed = true;
        foreach (var layer in Model.Model.Layers) layer.AroundCompute = null;
        Model.UseFusedKernels = Model.UseFusedKernels;  // the one-GPU kernels back in place
        foreach (var l in _layers) l.Dispose();
        if (_side is var (stream, computeReady, gathered))
        {
            _side = null;
            gathered.Dispose();
            computeReady.Dispose();
            stream.Dispose();
        }
    }

    private Layer Check(int layer)
    {
        if (layer < 0 || layer >= _layers.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"the model has {_layers.Length} decoder layers");
        return _layers[layer];
    }

    private sealed class Layer(ShardedNf4Weight[] weights) : IDisposable
    {
        public ShardedNf4Weight[] Weights { get; } = weights;
        public int Users;

        public void Dispose()
        {
            foreach (var w in Weights) w.Dispose();
        }
    }

    private sealed class Release(Layer layer) : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            if (--layer.Users == 0)
                foreach (var w in layer.Weights) w.Free();
        }
    }

    private sealed class ReleaseAll(List<IDisposable> held) : IDisposable
    {
        public void Dispose()
        {
            for (var i = held.Count - 1; i >= 0; i--) held[i].Dispose();
            held.Clear();
        }
    }
}
