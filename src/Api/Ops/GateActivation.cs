namespace SlothSharp.Ops;

/// <summary>The activation of a gated MLP's gate: down(act(gate(x)) · up(x)).</summary>
public enum GateActivation
{
    /// <summary>silu(g) = g · σ(g) (SwiGLU: Llama, Mistral, Qwen, Phi-3).</summary>
    Silu,

    /// <summary>The tanh approximation of GELU, 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))) (GeGLU: Gemma's
    /// <c>gelu_pytorch_tanh</c>).</summary>
    GeluTanh,
}
