using NUnit.Framework;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Locations and device checks shared by the tests.</summary>
internal static class TestEnv
{
    /// <summary>The golden data (tests/data in the repository), copied next to the test assembly by the build.
    /// Missing data fails the test: a golden test that cannot run must not pass.</summary>
    public static string DataDir
    {
        get
        {
            var dir = Path.Combine(AppContext.BaseDirectory, "data");
            if (!File.Exists(Path.Combine(dir, "README.md")))
                Assert.Fail($"golden data not found at {dir}: tests/data is copied there by the build (dotnet build tests)");
            return dir;
        }
    }

    /// <summary>The bitsandbytes NF4 golden vectors (tests/data/bnb-nf4).</summary>
    public static string GoldenDir => Path.Combine(DataDir, "bnb-nf4");

    /// <summary>The tiny Hugging Face Llama family (tests/data/hf-tiny-llama): dense/, nf4/, adapter/, expected.*.</summary>
    public static string TinyLlamaDir => Path.Combine(DataDir, "hf-tiny-llama");

    public static readonly string[] GoldenFiles = ["bnb_nf4_small", "bnb_nf4_odd", "bnb_nf4_mlp"];

    public static string Golden(string name) => Path.Combine(GoldenDir, name + ".safetensors");

    /// <summary>Marks the test inconclusive (not passed) when no CUDA device is usable through both TorchSharp and
    /// libslothsharp.</summary>
    public static void RequireCuda()
    {
        Assume.That(cuda.is_available(), "TorchSharp sees no CUDA device");
        Assume.That(CudaDevice.IsAvailable, "libslothsharp has no usable CUDA device (CPU-only build?)");
    }

    /// <summary>True when both tensors have the same dtype and shape and identical bytes (bit-exact, so -0 ≠ +0).</summary>
    public static bool BitEqual(Tensor a, Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var ca = a.detach().cpu().contiguous();
        using var cb = b.detach().cpu().contiguous();
        return ca.bytes.SequenceEqual(cb.bytes);
    }

    /// <summary>‖a − b‖ / ‖b‖ in float64.</summary>
    public static double RelativeError(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        var a = actual.detach().to(ScalarType.Float64).cpu();
        var e = expected.detach().to(ScalarType.Float64).cpu();
        var denom = e.norm().item<double>();
        var num = (a - e).norm().item<double>();
        return denom == 0 ? num : num / denom;
    }

    public static void AssertClose(Tensor actual, Tensor expected, double tolerance, string what)
    {
        Assert.That(actual.shape, Is.EqualTo(expected.shape), $"{what}: shape");
        using var finite = actual.detach().isfinite().all();
        Assert.That(finite.item<bool>(), Is.True, $"{what}: has NaN/Inf");
        var rel = RelativeError(actual, expected);
        Assert.That(rel, Is.LessThanOrEqualTo(tolerance), $"{what}: relative error {rel:E3} > {tolerance:E1}");
    }
}
