using System.Runtime.InteropServices;
using NUnit.Framework;
using SlothSharp.Interop;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>A failure inside a native CPU worker thread becomes a status and a message (never std::terminate).
/// native/cpu/parallel.h's test hook SLOTHSHARP_TEST_WORKER_FAULT=alloc throws std::bad_alloc in every range.</summary>
[NonParallelizable]
public class NativeWorkerFaultTests
{
    // .NET keeps its own copy of the environment on Unix: the native getenv() only sees libc's setenv().
    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    [DllImport("libc", EntryPoint = "unsetenv")]
    private static extern int UnsetEnv(string name);

    private const string Hook = "SLOTHSHARP_TEST_WORKER_FAULT";

    [Test]
    public void AllocationFailureInAWorkerBecomesAnError()
    {
        using var scope = NewDisposeScope();
        // 4M elements: enough work for parallel_ranges to start worker threads on a multi-core machine.
        var weight = randn(2048, 2048, dtype: ScalarType.Float32, generator: new Generator().manual_seed(3));
        using var w = Nf4Weight.Quantize(weight, 64);
        using var before = w.Dequantize(ScalarType.Float32);

        SlothException? error;
        Assert.That(SetEnv(Hook, "alloc", 1), Is.EqualTo(0));
        try
        {
            error = Assert.Throws<SlothInternalException>(() => w.Dequantize(ScalarType.Float32).Dispose());
        }
        finally
        {
            UnsetEnv(Hook);
        }
        Assert.That(error!.NativeMessage, Does.Contain("out of host memory in sloth_nf4_dequantize"));

        // The hook is read per call: without it the same call works again and gives the same values.
        using var after = w.Dequantize(ScalarType.Float32);
        Assert.That(TestEnv.BitEqual(after, before), Is.True);
    }
}
