using NUnit.Framework;
using SlothSharp.Interop;

namespace SlothSharp.Tests;

public class InteropTests
{
    [Test]
    public void LibraryLoadsWithTheExpectedAbiVersion()
    {
        Native.EnsureLoaded();
        Assert.That(Native.AbiVersion(), Is.EqualTo(SlothConstants.AbiVersion));
        Assert.That(Native.LibraryPath, Does.EndWith("libslothsharp.so").Or.Contain("system search path"), Native.LibraryPath);
    }

    [Test]
    public void CudaQueriesAnswerWithoutFailing()
    {
        // Works in both builds: a CPU-only library answers "no CUDA" rather than failing.
        var count = CudaDevice.DeviceCount;
        Assert.That(count, Is.GreaterThanOrEqualTo(0));
        Assert.That(CudaDevice.IsAvailable, Is.EqualTo(count > 0));
        if (!CudaDevice.BuiltWithCuda)
        {
            Assert.That(count, Is.EqualTo(0));
            Assert.Throws<SlothNoCudaException>(() => CudaDevice.MemoryInfo(0));
            Assert.Throws<SlothNoCudaException>(() => CudaDevice.Synchronize(0));
            Assert.Throws<SlothNoCudaException>(() => CudaDevice.Profiler(true, 0));
        }
        else if (count > 0)
        {
            Assert.Throws<SlothInvalidArgumentException>(() => CudaDevice.Name(count));
        }
    }

    [Test]
    public void ErrorMessagesAreThreadLocal()
    {
        Native.EnsureLoaded();
        unsafe
        {
            Assert.That(Native.TryCudaAvailable(0), Is.EqualTo(SlothStatus.ErrorInvalidArgument));
        }
        var mine = Native.LastErrorMessage;
        string? other = null;
        var t = new Thread(() => other = Native.LastErrorMessage);
        t.Start();
        t.Join();
        Assert.That(mine, Does.Contain("sloth_cuda_available: out is NULL"));
        Assert.That(other, Is.Empty);
    }
}
