using SlothSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Distributed;

/// <summary>
/// <see cref="ICommunicator"/> over NCCL (through libslothsharp, which opens libnccl.so.2 at run time): one rank per
/// process and GPU, CUDA tensors on <see cref="Device"/>. Collectives are queued on the legacy default stream, the
/// one TorchSharp computes on, so they are ordered with the surrounding tensor work without any synchronization.
/// Make the id with <see cref="NewUniqueId"/> on one rank, send it to the others (a file, an environment variable, a
/// pipe), and call <see cref="Create"/> on every rank. Every rank must issue the same collectives in the same order
/// with the same dtypes and sizes: NCCL cannot check that (a mismatch hangs or corrupts).
/// </summary>
public sealed unsafe class NcclCommunicator : ICommunicator
{
    private nint _comm;

    private NcclCommunicator(nint comm, int rank, int size, int device)
    {
        _comm = comm;
        Rank = rank;
        Size = size;
        Device = device;
    }

    public int Rank { get; }
    public int Size { get; }
    /// <summary>The CUDA ordinal this rank runs on.</summary>
    public int Device { get; }

    /// <summary>True when libslothsharp has CUDA and libnccl.so.2 (NCCL ≥ 2.10) could be loaded.</summary>
    public static bool IsAvailable => Probe().Available;

    /// <summary>NCCL's version code (e.g. 22703 for 2.27.3), or 0 when unavailable.</summary>
    public static int Version => Probe().Version;

    private static (bool Available, int Version) Probe()
    {
        LoadTorchCuda();
        int ok, version;
        Native.NcclAvailable((nint)(&ok), (nint)(&version));
        return (ok != 0, version);
    }

    /// <summary>A new NCCL unique id (<see cref="SlothConstants.NcclUniqueIdBytes"/> bytes) for <see cref="Create"/>.
    /// Throws <see cref="SlothUnsupportedException"/> (saying why) without CUDA or NCCL.</summary>
    public static byte[] NewUniqueId()
    {
        LoadTorchCuda();
        var id = new byte[SlothConstants.NcclUniqueIdBytes];
        fixed (byte* p = id) Native.NcclGetUniqueId((nint)p);
        return id;
    }

    /// <summary>Joins the communicator <paramref name="uniqueId"/> as <paramref name="rank"/> of
    /// <paramref name="size"/> on CUDA device <paramref name="device"/>. Blocks until every rank has joined.</summary>
    public static NcclCommunicator Create(ReadOnlySpan<byte> uniqueId, int size, int rank, int device)
    {
        if (uniqueId.Length != SlothConstants.NcclUniqueIdBytes)
            throw new ArgumentException($"an NCCL unique id has {SlothConstants.NcclUniqueIdBytes} bytes; got {uniqueId.Length}", nameof(uniqueId));
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, "must be >= 1");
        if (rank < 0 || rank >= size) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"must be in [0, {size})");
        if (device < 0) throw new ArgumentOutOfRangeException(nameof(device), device, "must be a CUDA ordinal (>= 0)");
        LoadTorchCuda();
        nint comm;
        fixed (byte* id = uniqueId) Native.NcclCommInit((nint)id, size, rank, device, (nint)(&comm));
        return new NcclCommunicator(comm, rank, size, device);
    }

    /// <summary>TorchSharp's CUDA libtorch depends on libnccl.so.2: once it is loaded, libslothsharp's dlopen finds
    /// NCCL by name even where it is not on the library path (PyTorch's wheels keep it beside themselves). The result
    /// of the first probe is kept for the process, so this must come first.</summary>
    private static void LoadTorchCuda() => _ = cuda.is_available();

    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        CommunicatorChecks.InPlace(tensor, nameof(tensor));
        CommunicatorChecks.Op(op);
        var dtype = Check(tensor, nameof(tensor));
        var p = TensorInterop.DataPtr(tensor);
        Native.NcclAllReduce(p, p, tensor.numel(), dtype, ToSloth(op), Handle, 0);
    }

    public Tensor AllGather(Tensor shard)
    {
        CommunicatorChecks.Rows(shard, nameof(shard));
        var dtype = Check(shard, nameof(shard));
        using var src = shard.contiguous();
        var output = empty([shard.shape[0] * Size, .. shard.shape.Skip(1)], shard.dtype, shard.device);
        try
        {
            Native.NcclAllGather(TensorInterop.DataPtr(src), TensorInterop.DataPtr(output), src.numel(), dtype, Handle, 0);
            return output;
        }
        catch
        {
            output.Dispose();
            throw;
        }
    }

    /// <summary>All-gather into a caller-made <paramref name="output"/> ([Size·n, …] elements, contiguous, the shard's
    /// dtype) queued on <paramref name="stream"/> (0: the legacy default stream). The caller orders the stream against
    /// the streams that wrote the shard and will read or free the output (events: <see cref="CudaEvent"/>).</summary>
    internal void AllGatherInto(Tensor shard, Tensor output, nint stream)
    {
        var dtype = Check(shard, nameof(shard));
        Check(output, nameof(output));
        if (!shard.is_contiguous()) throw new ArgumentException("shard must be contiguous", nameof(shard));
        if (!output.is_contiguous() || output.dtype != shard.dtype || output.numel() != shard.numel() * Size)
            throw new ArgumentException($"output must be a contiguous {shard.dtype} tensor of {shard.numel() * Size} elements; got {output.dtype} with {output.numel()}", nameof(output));
        Native.NcclAllGather(TensorInterop.DataPtr(shard), TensorInterop.DataPtr(output), shard.numel(), dtype, Handle, stream);
    }

    public Tensor ReduceScatter(Tensor full, ReduceOp op = ReduceOp.Sum)
    {
        var rows = CommunicatorChecks.ScatterRows(full, Size, nameof(full));
        CommunicatorChecks.Op(op);
        var dtype = Check(full, nameof(full));
        using var src = full.contiguous();
        var output = empty([rows, .. full.shape.Skip(1)], full.dtype, full.device);
        try
        {
            Native.NcclReduceScatter(TensorInterop.DataPtr(src), TensorInterop.DataPtr(output), output.numel(), dtype, ToSloth(op), Handle, 0);
            return output;
        }
        catch
        {
            output.Dispose();
            throw;
        }
    }

    public void Broadcast(Tensor tensor, int root)
    {
        CommunicatorChecks.InPlace(tensor, nameof(tensor));
        CommunicatorChecks.Root(root, Size);
        var dtype = Check(tensor, nameof(tensor));
        var p = TensorInterop.DataPtr(tensor);
        Native.NcclBroadcast(p, p, tensor.numel(), dtype, root, Handle, 0);
    }

    /// <summary>An all-reduce of one value, then a wait for this device: every rank has reached this point and this
    /// rank's queued work is done.</summary>
    public void Barrier()
    {
        using var token = zeros(1, ScalarType.Int32, new torch.Device(DeviceType.CUDA, Device));
        AllReduce(token);
        CudaDevice.Synchronize(Device);
    }

    /// <summary>Collectives issued inside the returned scope are launched together when it is disposed (NCCL groups),
    /// e.g. the all-gathers of one layer's weights.</summary>
    public IDisposable Group()
    {
        _ = Handle;
        Native.NcclGroupStart();
        return new GroupScope();
    }

    private sealed class GroupScope : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            Native.NcclGroupEnd();
        }
    }

    /// <summary>Frees the communicator. Call it on every rank after the last collective.</summary>
    public void Dispose()
    {
        var comm = Interlocked.Exchange(ref _comm, 0);
        if (comm != 0) Native.NcclCommDestroy(comm);
    }

    /// <summary>The native communicator (for tests of the C ABI).</summary>
    internal nint NativeHandle => Handle;

    private nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_comm == 0, this);
            return _comm;
        }
    }

    private SlothCommDtype Check(Tensor t, string name)
    {
        if (t.device_type != DeviceType.CUDA || Math.Max(t.device_index, 0) != Device)
            throw new ArgumentException($"{name} is on {t.device}; this NCCL communicator works on cuda:{Device}", name);
        return t.dtype switch
        {
            ScalarType.Byte => SlothCommDtype.U8,
            ScalarType.Int8 => SlothCommDtype.I8,
            ScalarType.Int32 => SlothCommDtype.I32,
            ScalarType.Int64 => SlothCommDtype.I64,
            ScalarType.Float16 => SlothCommDtype.F16,
            ScalarType.BFloat16 => SlothCommDtype.Bf16,
            ScalarType.Float32 => SlothCommDtype.F32,
            ScalarType.Float64 => SlothCommDtype.F64,
            _ => throw new ArgumentException($"{name} is {t.dtype}; collectives take uint8, int8, int32, int64, float16, bfloat16, float32 or float64", name),
        };
    }

    private static SlothCommOp ToSloth(ReduceOp op) => op switch
    {
        ReduceOp.Sum => SlothCommOp.Sum,
        ReduceOp.Avg => SlothCommOp.Avg,
        ReduceOp.Max => SlothCommOp.Max,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "not a ReduceOp"),
    };
}
