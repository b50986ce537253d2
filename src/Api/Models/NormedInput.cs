using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>
/// A projection input that is a decoder layer's input or pre-MLP RMSNorm output (<see cref="DecoderKernels.ProjectionNorm"/>),
/// with, when the kernels recompute norms (<see cref="CausalLM.RecomputeNorms"/>) in a training forward, how it was
/// made. Passed explicitly from the layer to the projections that consume it rather than looked up by tensor: only
/// the layer knows that these norm outputs feed projections and nothing else (Gemma's post-norms feed residual adds,
/// Q/K norms feed RoPE), and an explicit argument cannot be lost silently to a view or a copy on the way.
/// </summary>
internal sealed record NormedInput(Tensor Value, RmsNormRecipe? Recipe);
