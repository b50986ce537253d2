namespace SlothSharp.Autograd;

/// <summary>A SlothSharp backward failed; its gradients for that step are missing.</summary>
public sealed class SlothBackwardException(string function, Exception inner)
    : InvalidOperationException($"a SlothSharp backward ({function}) failed, so that step's gradients are missing: {inner.Message}", inner)
{
    /// <summary>The autograd function whose backward failed, e.g. "SlothSharp.FusedLinearCrossEntropy".</summary>
    public string Function { get; } = function;
}
