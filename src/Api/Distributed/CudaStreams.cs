using SlothSharp.Interop;

namespace SlothSharp.Distributed;

/// <summary>
/// A non-blocking CUDA stream of libslothsharp (<c>sloth_cuda_stream_create</c>): work queued on it overlaps
/// TorchSharp's computation on the legacy default stream (<see cref="LegacyDefault"/>, handle 0), ordered only by
/// <see cref="CudaEvent"/>s. Without CUDA in libslothsharp, <see cref="Create"/> throws
/// <see cref="SlothUnsupportedException"/> saying so.
/// </summary>
public sealed unsafe class CudaStream : IDisposable
{
    private nint _handle;

    private CudaStream(int device, nint handle) => (Device, _handle) = (device, handle);

    /// <summary>The legacy default stream's handle (TorchSharp's compute stream).</summary>
    public const nint LegacyDefault = 0;

    /// <summary>The CUDA ordinal the stream belongs to.</summary>
    public int Device { get; }

    /// <summary>The native cudaStream_t (what the collectives' <c>stream</c> argument takes).</summary>
    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == 0, this);
            return _handle;
        }
    }

    /// <summary>A new non-blocking stream on CUDA device <paramref name="device"/>.</summary>
    public static CudaStream Create(int device)
    {
        if (device < 0) throw new ArgumentOutOfRangeException(nameof(device), device, "must be a CUDA ordinal (>= 0)");
        nint handle = 0;
        Native.CudaStreamCreate(device, (nint)(&handle));
        return new CudaStream(device, handle);
    }

    /// <summary>Makes <paramref name="stream"/> (0: the legacy default stream) wait on the device for
    /// <paramref name="e"/>'s last record; the host does not wait.</summary>
    public static void Wait(int device, nint stream, CudaEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        Native.CudaStreamWaitEvent(device, stream, e.Handle);
    }

    public void Dispose()
    {
        var h = Interlocked.Exchange(ref _handle, 0);
        if (h != 0) Native.TryCudaStreamDestroy(Device, h);  // queued work still completes; nothing to report on teardown
    }
}

/// <summary>A CUDA event without timing (<c>sloth_cuda_event_create</c>): recorded on one stream, waited for by
/// another.</summary>
public sealed unsafe class CudaEvent : IDisposable
{
    private nint _handle;

    private CudaEvent(int device, nint handle) => (Device, _handle) = (device, handle);

    public int Device { get; }

    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == 0, this);
            return _handle;
        }
    }

    /// <summary>A new event on CUDA device <paramref name="device"/> (timing disabled).</summary>
    public static CudaEvent Create(int device)
    {
        if (device < 0) throw new ArgumentOutOfRangeException(nameof(device), device, "must be a CUDA ordinal (>= 0)");
        nint handle = 0;
        Native.CudaEventCreate(device, (nint)(&handle));
        return new CudaEvent(device, handle);
    }

    /// <summary>Records the event on <paramref name="stream"/> (0: the legacy default stream).</summary>
    public void Record(nint stream) => Native.CudaEventRecord(Device, Handle, stream);

    public void Dispose()
    {
        var h = Interlocked.Exchange(ref _handle, 0);
        if (h != 0) Native.TryCudaEventDestroy(Device, h);
    }
}
