using SlothSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp;

/// <summary>Turns TorchSharp tensors into what the C ABI takes: raw addresses, device selectors and dtypes.</summary>
internal static class TensorInterop
{
    /// <summary>Address of the tensor's first element: the storage base plus storage_offset x element size, so a
    /// sliced view points at its own first element, not at the start of the storage it shares.</summary>
    public static nint DataPtr(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (t.numel() == 0) return 0;
        var basePtr = TorchSharpNative.THSStorage_data_ptr(t.Handle);
        if (basePtr == 0) throw new InvalidOperationException($"tensor [{string.Join(", ", t.shape)}] {t.dtype} has no storage");
        GC.KeepAlive(t);
        return basePtr + checked((nint)(t.storage_offset() * t.element_size()));
    }

    /// <summary>-1 for CPU tensors, the CUDA ordinal for CUDA tensors.</summary>
    public static int DeviceSelector(Tensor t) => t.device_type switch
    {
        DeviceType.CPU => -1,
        DeviceType.CUDA => t.device_index < 0 ? 0 : t.device_index,
        _ => throw new ArgumentException($"SlothSharp supports CPU and CUDA tensors; got a tensor on {t.device}"),
    };

    public static SlothDtype ToSloth(ScalarType t, string name) => t switch
    {
        ScalarType.Float32 => SlothDtype.F32,
        ScalarType.Float16 => SlothDtype.F16,
        ScalarType.BFloat16 => SlothDtype.Bf16,
        _ => throw new ArgumentException($"{name} must be float32, float16 or bfloat16; got {t}", name),
    };

    public static bool IsFloating16Or32(ScalarType t) =>
        t is ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16;

    public static void RequireDtype(Tensor t, ScalarType expected, string name)
    {
        if (t.dtype != expected) throw new ArgumentException($"{name} must be {expected}; got {t.dtype}", name);
    }

    public static void RequireContiguous(Tensor t, string name)
    {
        if (!t.is_contiguous()) throw new ArgumentException($"{name} must be contiguous (call .contiguous())", name);
    }

    public static void RequireSameDevice(Tensor a, string aName, Tensor b, string bName)
    {
        if (a.device_type != b.device_type || DeviceSelector(a) != DeviceSelector(b))
            throw new ArgumentException($"{bName} is on {b.device} but {aName} is on {a.device}; move them to one device", bName);
    }

    public static void RequireNumel(Tensor t, long expected, string name)
    {
        if (t.numel() != expected)
            throw new ArgumentException($"{name} must have {expected} elements; got {t.numel()} (shape [{string.Join(", ", t.shape)}])", name);
    }
}
