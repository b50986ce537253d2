namespace SlothSharp.Distributed;

/// <summary>How a collective combines the ranks' values.</summary>
public enum ReduceOp
{
    /// <summary>The sum over ranks (in rank order for <see cref="InProcessCommunicator"/>).</summary>
    Sum,
    /// <summary>The sum divided by the number of ranks (integer types: truncated).</summary>
    Avg,
    /// <summary>The element-wise maximum.</summary>
    Max,
}
