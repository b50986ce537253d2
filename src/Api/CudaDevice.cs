using System.Text;
using SlothSharp.Interop;

namespace SlothSharp;

/// <summary>CUDA device queries through libslothsharp (TorchSharp offers no memory statistics). A CPU-only build of
/// the library answers "no CUDA": <see cref="IsAvailable"/> is false and <see cref="DeviceCount"/> is 0.</summary>
public static unsafe class CudaDevice
{
    /// <summary>True when libslothsharp was compiled with its CUDA kernels.</summary>
    public static bool BuiltWithCuda
    {
        get
        {
            int v;
            Native.BuiltWithCuda((nint)(&v));
            return v != 0;
        }
    }

    /// <summary>True when the CUDA kernels are compiled in and a device is usable.</summary>
    public static bool IsAvailable
    {
        get
        {
            int v;
            Native.CudaAvailable((nint)(&v));
            return v != 0;
        }
    }

    public static int DeviceCount
    {
        get
        {
            int v;
            Native.CudaDeviceCount((nint)(&v));
            return v;
        }
    }

    public static string Name(int device = 0)
    {
        var buffer = stackalloc byte[256];
        Native.CudaDeviceName(device, (nint)buffer, 256);
        var bytes = new ReadOnlySpan<byte>(buffer, 256);
        var end = bytes.IndexOf((byte)0);  // the library NUL-terminates (and truncates) the name
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    public static (int Major, int Minor) ComputeCapability(int device = 0)
    {
        int major, minor;
        Native.CudaComputeCapability(device, (nint)(&major), (nint)(&minor));
        return (major, minor);
    }

    /// <summary>Free and total device memory in bytes (cudaMemGetInfo: includes what caching allocators hold).</summary>
    public static (long Free, long Total) MemoryInfo(int device = 0)
    {
        long free, total;
        Native.CudaMemInfo(device, (nint)(&free), (nint)(&total));
        return (free, total);
    }

    /// <summary>The __CUDA_ARCH__ the library's kernels run with on the device (900 on an H100 with native code,
    /// 750 when only the compute_75 PTX was built). Synchronous; for diagnostics.</summary>
    public static int KernelArch(int device = 0)
    {
        int arch;
        Native.CudaKernelArch(device, (nint)(&arch));
        return arch;
    }

    /// <summary>Waits until all work queued on the device has finished.</summary>
    public static void Synchronize(int device = 0)
    {
        Native.CudaSynchronize(device);
    }

    /// <summary>Starts (<paramref name="collect"/> true) or stops the collection of a profiler attached with collection
    /// off at start (<c>ncu --profile-from-start off</c>, <c>nsys profile --capture-range=cudaProfilerApi</c>), so that a
    /// benchmark profiles its timed window only. Does nothing without a profiler attached.</summary>
    public static void Profiler(bool collect, int device = 0)
    {
        Native.CudaProfiler(device, collect ? 1 : 0);
    }
}
