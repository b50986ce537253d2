using System.Runtime.InteropServices;

namespace SlothSharp;

/// <summary>
/// The one LibTorchSharp export SlothSharp calls directly. TorchSharp's public <c>Tensor.storage&lt;T&gt;()</c> first
/// converts the tensor to T (a copy when the dtype differs) and rejects Half and BFloat16, so its pointer cannot
/// serve kernels; <c>THSStorage_data_ptr</c> returns the base of the tensor's own storage for any dtype.
/// </summary>
internal static partial class TorchSharpNative
{
    [LibraryImport("LibTorchSharp")]
    internal static partial nint THSStorage_data_ptr(nint tensor);
}
