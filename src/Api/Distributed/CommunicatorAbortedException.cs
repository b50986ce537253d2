namespace SlothSharp.Distributed;

/// <summary>A collective could not complete because another rank failed, left the group, mismatched the call, or
/// the wait timed out. The message names the rank and the collective; <see cref="Exception.InnerException"/> is the
/// root cause when known.</summary>
public sealed class CommunicatorAbortedException : InvalidOperationException
{
    public CommunicatorAbortedException(string message, Exception? inner = null) : base(message, inner) { }
}
