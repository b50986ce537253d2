using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>
/// One decoder projection's NF4 weight, sharded: this rank keeps its <see cref="Nf4BlockShard"/> of the packed bytes
/// and absmax codes; the small tensors (nested absmax, code tables, offset) stay whole on every rank. Between uses
/// the full packed and absmax tensors hold no memory: every tensor object that views them (the Nf4Weight's own, the
/// buffers that Projection and Linear4bit register for state_dict) is re-pointed with <c>set_</c> to an empty
/// tensor, which drops the last reference to the storage. <see cref="Gather"/> all-gathers the shards and re-points
/// the same objects, in their own shapes, at the gathered bytes.
/// </summary>
internal sealed class ShardedNf4Weight : IDisposable
{
    private readonly Nf4Weight _weight;
    private readonly Nf4BlockShard _layout;
    private readonly List<(Tensor Alias, long[] Shape)> _packedAliases = [];
    private readonly List<(Tensor Alias, long[] Shape)> _codesAliases = [];
    private readonly Tensor _packedShard;
    private readonly Tensor _codesShard;

    /// <param name="name">the weight's name in messages (model.layers.i.q_proj)</param>
    /// <param name="linear">the NF4 projection whose weight is sharded</param>
    /// <param name="rank">this rank</param>
    /// <param name="size">the number of ranks</param>
    /// <param name="preloaded">this rank's shard (packed bytes, absmax codes: padded to the layout's shard lengths, on
    /// the weight's device), made while loading (<see cref="ShardedCausalLM.LoadPretrained"/>); the weight's own full
    /// tensors are then placeholders whose content is never read. Null: the shard is copied from the full weight.</param>
    public ShardedNf4Weight(string name, Projection linear, int rank, int size, (Tensor Packed, Tensor Codes)? preloaded = null)
    {
        Name = name;
        _weight = linear.Nf4 ?? throw new InvalidOperationException($"{name} is not an NF4 projection");
        _layout = new Nf4BlockShard(_weight.NumElements, _weight.Blocksize, size);
        if (_weight.Packed.numel() != _layout.PackedLength || _weight.AbsmaxCodes.numel() != _layout.Blocks)
            throw new InvalidOperationException($"{name}: the NF4 weight holds {_weight.Packed.numel()} packed bytes, not {_layout.PackedLength}: " +
                "its memory was released by an earlier ShardedCausalLM that was disposed without Unshard()");
        var packedKey = BitsAndBytesNf4Format.KeyOf(Linear4bit.WeightKey, Nf4TensorSpec.Packed);
        var codesKey = BitsAndBytesNf4Format.KeyOf(Linear4bit.WeightKey, Nf4TensorSpec.Absmax);
        _packedAliases.Add((_weight.Packed, _weight.Packed.shape));
        _codesAliases.Add((_weight.AbsmaxCodes, _weight.AbsmaxCodes.shape));
        foreach (var module in new TorchSharp.torch.nn.Module?[] { linear, linear.Nf4Layer })
        {
            if (module is null) continue;
            foreach (var (key, t) in module.named_buffers(recurse: false))
            {
                if (key == packedKey) _packedAliases.Add((t, t.shape));
                else if (key == codesKey) _codesAliases.Add((t, t.shape));
            }
        }
        using var noGrad = no_grad();
        var device = _weight.Device;
        if (preloaded is var (packedShard, codesShard))
        {
            if (packedShard.numel() != _layout.ShardPackedLength || codesShard.numel() != _layout.BlocksPerRank
                || packedShard.dtype != ScalarType.Byte || codesShard.dtype != ScalarType.Byte || !SameDevice(packedShard.device, device) || !SameDevice(codesShard.device, device))
                throw new ArgumentException($"{name}: the preloaded shard holds {packedShard.numel()} packed bytes and {codesShard.numel()} codes " +
                    $"({packedShard.dtype}, {packedShard.device}); the layout needs {_layout.ShardPackedLength} and {_layout.BlocksPerRank} uint8 on {device}", nameof(preloaded));
            _packedShard = packedShard;
            _codesShard = codesShard;
            Free();
            return;
        }
        (_packedShard, _codesShard) = ShardOf(_weight, rank, size, device);
        Free();
    }

    /// <summary>Rank <paramref name="rank"/>'s shard of <paramref name="weight"/> (any device) as new uint8 tensors on
    /// <paramref name="device"/>, padded to the layout's shard lengths (zeros past the weight's last block).</summary>
    internal static (Tensor Packed, Tensor Codes) ShardOf(Nf4Weight weight, int rank, int size, Device device)
    {
        var layout = new Nf4BlockShard(weight.NumElements, weight.Blocksize, size);
        using var noGrad = no_grad();
        var packed = zeros(layout.ShardPackedLength, ScalarType.Byte, device);
        var codes = zeros(layout.BlocksPerRank, ScalarType.Byte, device);
        var (first, count) = layout.Owned(rank);
        if (count > 0)
        {
            var (start, length) = layout.PackedRange(rank);
            using (var dst = packed.narrow(0, 0, length))
            using (var src = weight.Packed.narrow(0, start, length))
                dst.copy_(src);
            using (var dst = codes.narrow(0, 0, count))
            using (var src = weight.AbsmaxCodes.narrow(0, first, count))
                dst.copy_(src);
        }
        return (packed.DetachFromDisposeScope(), codes.DetachFromDisposeScope());
    }

    private static bool SameDevice(Device a, Device b) => a.type == b.type && Math.Max(0, a.index) == Math.Max(0, b.index);

    public string Name { get; }
    public Nf4BlockShard Layout => _layout;

    /// <summary>Bytes this rank keeps of the sharded tensors (padding included).</summary>
    public long ShardBytes => _layout.ShardPackedLength + _layout.BlocksPerRank;

    /// <summary>Bytes of the sharded tensors unsharded.</summary>
    public long FullBytes => _layout.PackedLength + _layout.Blocks;

    /// <summary>All-gathers the packed bytes and absmax codes (a collective: every rank calls it for the same weight)
    /// and points every view of the weight at them.</summary>
    public void Gather(ICommunicator comm)
    {
        var (packed, codes) = GatherTensors(comm);
        Install(packed, codes);
    }

    /// <summary>The collective half of <see cref="Gather"/>: the full packed bytes and codes as new tensors (outside
    /// any dispose scope; <see cref="Install"/> takes them). Safe on another thread than the one computing.</summary>
    public (Tensor Packed, Tensor Codes) GatherTensors(ICommunicator comm)
    {
        using var noGrad = no_grad();
        using var packedFull = comm.AllGather(_packedShard);
        using var codesFull = comm.AllGather(_codesShard);
        var packed = packedFull.narrow(0, 0, _layout.PackedLength).DetachFromDisposeScope();
        var codes = codesFull.narrow(0, 0, _layout.Blocks).DetachFromDisposeScope();
        return (packed, codes);
    }

    /// <summary>Uninitialized full-size receive buffers for <see cref="GatherOnStream"/> (allocated by the caller's
    /// thread on the compute stream, outside any dispose scope).</summary>
    public (Tensor PackedFull, Tensor CodesFull) AllocateGathered(int ranks)
    {
        var device = _packedShard.device;
        return (empty(_layout.ShardPackedLength * ranks, ScalarType.Byte, device).DetachFromDisposeScope(),
                empty(_layout.BlocksPerRank * ranks, ScalarType.Byte, device).DetachFromDisposeScope());
    }

    /// <summary>All-gathers the shards into <paramref name="buffers"/> (from <see cref="AllocateGathered"/>) on
    /// <paramref name="stream"/> (a collective; the caller orders the stream against the compute stream).</summary>
    public void GatherOnStream(NcclCommunicator comm, (Tensor PackedFull, Tensor CodesFull) buffers, nint stream)
    {
        comm.AllGatherInto(_packedShard, buffers.PackedFull, stream);
        comm.AllGatherInto(_codesShard, buffers.CodesFull, stream);
    }

    /// <summary>The weight's full tensors out of gathered buffers (views without the padding, for
    /// <see cref="Install"/>); disposes the buffers' handles.</summary>
    public (Tensor Packed, Tensor Codes) Trim((Tensor PackedFull, Tensor CodesFull) buffers)
    {
        using var noGrad = no_grad();
        using (buffers.PackedFull)
        using (buffers.CodesFull)
            return (buffers.PackedFull.narrow(0, 0, _layout.PackedLength).DetachFromDisposeScope(),
                    buffers.CodesFull.narrow(0, 0, _layout.Blocks).DetachFromDisposeScope());
    }

    /// <summary>Points every view of the weight at <paramref name="packed"/> / <paramref name="codes"/> (from
    /// <see cref="GatherTensors"/>) and disposes those handles (the views keep the memory).</summary>
    public void Install(Tensor packed, Tensor codes)
    {
        using var noGrad = no_grad();
        using (packed)
        using (codes)
        {
            using var scope = NewDisposeScope();
            foreach (var (alias, shape) in _packedAliases) alias.set_(packed.view(shape));
            foreach (var (alias, shape) in _codesAliases) alias.set_(codes.view(shape));
        }
    }

    /// <summary>Points every view of the full packed bytes and codes at an empty tensor: their memory is released.</summary>
    public void Free()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = _weight.Device;
        foreach (var (alias, _) in _packedAliases.Concat(_codesAliases))
            alias.set_(empty(0, ScalarType.Byte, device));
    }

    /// <summary>True while the full tensors are present (between <see cref="Gather"/> and <see cref="Free"/>).</summary>
    public bool IsGathered => _weight.Packed.numel() == _layout.PackedLength;

    public void Dispose()
    {
        _packedShard.Dispose();
        _codesShard.Dispose();
    }
}
