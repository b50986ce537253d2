using static TorchSharp.torch;

namespace SlothSharp.Ops;

/// <summary>Argument checks shared by the fused ops, run before any native call so a bad input is an
/// <see cref="ArgumentException"/> naming the argument.</summary>
internal static class OpChecks
{
    public static void FloatingSameDtype(Tensor a, string aName, Tensor b, string bName)
    {
        TensorInterop.ToSloth(a.dtype, aName);
        if (b.dtype != a.dtype)
            throw new ArgumentException($"{bName} is {b.dtype} but {aName} is {a.dtype}; convert one of them", bName);
        TensorInterop.RequireSameDevice(a, aName, b, bName);
    }

    public static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
}
