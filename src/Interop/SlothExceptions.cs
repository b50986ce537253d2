namespace SlothSharp.Interop;

/// <summary>A libslothsharp call returned a non-OK <see cref="sloth_status"/>. <see cref="NativeMessage"/> is the
/// library's own message (from <c>sloth_last_error</c>), naming the function and the offending value.</summary>
public class SlothException : Exception
{
    public SlothException(sloth_status status, string nativeMessage)
        : base($"{nativeMessage} [{status}]")
    {
        Status = status;
        NativeMessage = nativeMessage;
    }

    public sloth_status Status { get; }
    public string NativeMessage { get; }
}

/// <summary>The native library rejected an argument (null pointer, size, dtype, blocksize, label out of range).</summary>
public sealed class SlothInvalidArgumentException(string message) : SlothException(sloth_status.SLOTH_ERROR_INVALID_ARGUMENT, message);

/// <summary>A CUDA device was asked for, but this build of libslothsharp or this machine has none.</summary>
public sealed class SlothNoCudaException(string message) : SlothException(sloth_status.SLOTH_ERROR_NO_CUDA, message);

/// <summary>The CUDA runtime reported an error; the message carries its name.</summary>
public sealed class SlothCudaException(string message) : SlothException(sloth_status.SLOTH_ERROR_CUDA, message);

/// <summary>Valid arguments that this build does not implement (for example quantization on the GPU).</summary>
public sealed class SlothUnsupportedException(string message) : SlothException(sloth_status.SLOTH_ERROR_UNSUPPORTED, message);

/// <summary>An internal error in libslothsharp: a bug to report with the message.</summary>
public sealed class SlothInternalException(string message) : SlothException(sloth_status.SLOTH_ERROR_INTERNAL, message);
