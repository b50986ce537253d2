using SlothSharp.Interop;

namespace SlothSharp.Ops;

/// <summary>The activation of the gate in a gated MLP, <c>act(gate) * up</c> (<see cref="SwiGlu"/>,
/// <see cref="SwiGluNf4LoraLinear"/>).</summary>
public enum GateActivation
{
    /// <summary>silu(g) = g · sigmoid(g): SwiGLU (Llama, Qwen2/3, Mistral, Phi-3; transformers' <c>hidden_act = "silu"</c>).</summary>
    Silu = 0,

    /// <summary>GELU with the tanh approximation, 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))): GeGLU (Gemma, Gemma 2/3;
    /// transformers' <c>hidden_activation = "gelu_pytorch_tanh"</c>, PyTorch's <c>gelu(g, approximate="tanh")</c>).</summary>
    GeluTanh = 1,
}

internal static class GateActivations
{
    /// <summary>The C ABI's value, after checking that <paramref name="activation"/> is a defined member.</summary>
    public static SlothGateActivation ToNative(GateActivation activation, string paramName) => activation switch
    {
        GateActivation.Silu => SlothGateActivation.Silu,
        GateActivation.GeluTanh => SlothGateActivation.GeluTanh,
        _ => throw new ArgumentOutOfRangeException(paramName, activation, "not a GateActivation (Silu or GeluTanh)"),
    };
}
