using SlothSharp.Autograd;
using static TorchSharp.torch;

namespace SlothSharp.Losses;

/// <summary>The argument layout of the LM-head loss functions, in apply() and in save_for_backward alike:
/// x [N, H], w [V, H], b [V] or null, targets [N, ...].</summary>
internal readonly record struct HeadInputs(Tensor X, Tensor W, Tensor? B, Tensor Targets)
{
    public static HeadInputs Of(Tensor?[] inputs) => new(inputs[0]!, inputs[1]!, inputs[2], inputs[3]!);

    public static HeadInputs Of(SavedTensors saved) => new(saved[0]!, saved[1]!, saved[2], saved[3]!);

    public Tensor?[] ToArray() => [X, W, B, Targets];

    /// <summary>Saves the four for backward (a null bias stays null).</summary>
    public void SaveForBackward(autograd.AutogradContext ctx) => ctx.save_for_backward([X, W, B!, Targets]);
}
