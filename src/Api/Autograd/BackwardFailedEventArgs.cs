namespace SlothSharp.Autograd;

/// <summary>Arguments of <see cref="SlothAutograd.BackwardFailed"/>.</summary>
public sealed class BackwardFailedEventArgs(string function, Exception exception) : EventArgs
{
    public string Function { get; } = function;
    public Exception Exception { get; } = exception;
}
