namespace SlothSharp.Data;

/// <summary>How <see cref="Training.TrainingData.FromExamples"/> cuts examples into rows.</summary>
public sealed record TrainingDataOptions
{
    /// <summary>Tokens per row (T, at least 2). A longer example is split into windows of T tokens sharing one token
    /// (every target is trained once; a later window lacks the earlier context).</summary>
    public int SequenceLength { get; init; } = 2048;

    /// <summary>Concatenate examples and cut the stream into rows of T tokens; documents keep their boundaries
    /// (position ids restart, sequence ids tell them apart, no label crosses a boundary).</summary>
    public bool Packing { get; init; }

    public TrainOn TrainOn { get; init; } = TrainOn.Default;
}
