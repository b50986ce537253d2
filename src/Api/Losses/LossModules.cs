using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>
/// <see cref="FusedLinearCrossEntropy.Apply"/> as a module, in the manner of <c>nn.CrossEntropyLoss</c>: it holds the
/// options and takes the LM head's weight at each call (the weight belongs to the model, which may tie it to the
/// embedding). It registers no parameters or buffers.
/// </summary>
public sealed class FusedLinearCrossEntropyLoss(CrossEntropyOptions? options = null)
    : nn.Module<Tensor, Tensor, Tensor, Tensor>(nameof(FusedLinearCrossEntropyLoss))
{
    public CrossEntropyOptions Options { get; } = Validated(options);

    /// <summary>hidden [N, H] or [B, T, H], weight [V, H], labels int64 [N] or [B, T]: see <see cref="FusedLinearCrossEntropy.Apply"/>.</summary>
    public override Tensor forward(Tensor hidden, Tensor weight, Tensor labels) => FusedLinearCrossEntropy.Apply(hidden, weight, null, labels, Options);

    /// <summary>The same with a bias [V].</summary>
    public Tensor forward(Tensor hidden, Tensor weight, Tensor? bias, Tensor labels) => FusedLinearCrossEntropy.Apply(hidden, weight, bias, labels, Options);

    internal static CrossEntropyOptions Validated(CrossEntropyOptions? options)
    {
        options ??= new CrossEntropyOptions();
        options.Validate();
        return options;
    }
}

/// <summary>
/// <see cref="ChunkedLinearLoss.CrossEntropy"/> as a module: the generic chunked path with the same options and
/// results as <see cref="FusedLinearCrossEntropyLoss"/>, so a model can switch between them.
/// </summary>
public sealed class ChunkedLinearCrossEntropyLoss(CrossEntropyOptions? options = null)
    : nn.Module<Tensor, Tensor, Tensor, Tensor>(nameof(ChunkedLinearCrossEntropyLoss))
{
    public CrossEntropyOptions Options { get; } = FusedLinearCrossEntropyLoss.Validated(options);

    public override Tensor forward(Tensor hidden, Tensor weight, Tensor labels) => ChunkedLinearLoss.CrossEntropy(hidden, weight, null, labels, Options);

    /// <summary>The same with a bias [V].</summary>
    public Tensor forward(Tensor hidden, Tensor weight, Tensor? bias, Tensor labels) => ChunkedLinearLoss.CrossEntropy(hidden, weight, bias, labels, Options);
}

/// <summary>
/// <see cref="ChunkedLinearLoss.Apply"/> as a module: any chunk loss (distillation, z-loss, token log-probs) with its
/// options; forward(hidden, weight, targets).
/// </summary>
public sealed class ChunkedLinearLossModule(ChunkLoss loss, ChunkedLossOptions? options = null)
    : nn.Module<Tensor, Tensor, Tensor, Tensor>(nameof(ChunkedLinearLossModule))
{
    public ChunkLoss Loss { get; } = loss ?? throw new ArgumentNullException(nameof(loss));
    public ChunkedLossOptions Options { get; } = options ?? new ChunkedLossOptions();

    public override Tensor forward(Tensor hidden, Tensor weight, Tensor targets) => ChunkedLinearLoss.Apply(hidden, weight, null, targets, Loss, Options);

    /// <summary>The same with a bias [V].</summary>
    public Tensor forward(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets) => ChunkedLinearLoss.Apply(hidden, weight, bias, targets, Loss, Options);
}
