namespace SlothSharp.Interop;

/// <summary>A libslothsharp call returned a non-OK <see cref="SlothStatus"/>. <see cref="NativeMessage"/> is the
/// library's own message (from <c>sloth_last_error</c>), naming the function and the offending value.</summary>
public class SlothException : Exception
{
    public SlothException(SlothStatus status, string nativeMessage)
        : base($"{nativeMessage} [{status}]")
    {
        Status = status;
        NativeMessage = nativeMessage;
    }

    public SlothStatus Status { get; }
    public string NativeMessage { get; }
}

/// <summary>The native library rejected an argument (null pointer, size, dtype, blocksize, label out of range).</summary>
public sealed class SlothInvalidArgumentException(string message) : SlothException(SlothStatus.ErrorInvalidArgument, message);

/// <summary>A CUDA device was asked for, but this build of libslothsharp or this machine has none.</summary>
public sealed class SlothNoCudaException(string message) : SlothException(SlothStatus.ErrorNoCuda, message);

/// <summary>The CUDA runtime reported an error; the message carries its name.</summary>
public sealed class SlothCudaException(string message) : SlothException(SlothStatus.ErrorCuda, message);

/// <summary>Valid arguments that this build does not implement .</summary>
public sealed class SlothUnsupportedException(string message) : SlothException(SlothStatus.ErrorUnsupported, message);

/// <summary>An internal error in libslothsharp: a bug to report with the message.</summary>
public sealed class SlothInternalException(string message) : SlothException(SlothStatus.ErrorInternal, message);
