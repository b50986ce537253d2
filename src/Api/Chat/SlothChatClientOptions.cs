namespace SlothSharp.Chat;

/// <summary>Defaults of a <see cref="SlothChatClient"/> for what a request's <c>ChatOptions</c> leaves unset.</summary>
public sealed record SlothChatClientOptions
{
    /// <summary>Most tokens of a reply when <c>ChatOptions.MaxOutputTokens</c> is not given (at least 1).</summary>
    public int DefaultMaxOutputTokens { get; init; } = 512;

    /// <summary>The model id reported in responses and in <c>ChatClientMetadata</c>; null: the name of the model's
    /// directory.</summary>
    public string? ModelId { get; init; }

    internal void Validate()
    {
        if (DefaultMaxOutputTokens < 1)
            throw new ArgumentOutOfRangeException(nameof(DefaultMaxOutputTokens), DefaultMaxOutputTokens, "must be >= 1");
        if (ModelId is { } id && string.IsNullOrWhiteSpace(id))
            throw new ArgumentException("ModelId must not be empty or white space (null: the model directory's name)", nameof(ModelId));
    }
}
