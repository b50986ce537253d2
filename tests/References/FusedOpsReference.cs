using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>The fused ops written as plain TorchSharp expressions, the way Hugging Face transformers writes them:
/// the references their forward and (through autograd) their gradients are checked against.</summary>
internal static class FusedOpsReference
{
    /// <summary>LlamaRMSNorm.forward.</summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        var xf = x.to(ScalarType.Float32);
        var h = xf * rsqrt(xf.pow(2).mean([-1], keepdim: true) + eps);
        return weight * h.to(x.dtype);
    }

    /// <summary>GemmaRMSNorm.forward (Gemma, Gemma 2, Gemma 3): everything in float32, one cast at the end.</summary>
    public static Tensor GemmaRmsNorm(Tensor x, Tensor weight, double eps)
    {
        var xf = x.to(ScalarType.Float32);
        var h = xf * rsqrt(xf.pow(2).mean([-1], keepdim: true) + eps);
        return (h * (1.0 + weight.to(ScalarType.Float32))).to(x.dtype);
    }

    public static Tensor RotateHalf(Tensor x)
    {
        var half = x.shape[^1] / 2;
        return cat([-x[TensorIndex.Ellipsis, TensorIndex.Slice(half)], x[TensorIndex.Ellipsis, TensorIndex.Slice(0, half)]], -1);
    }

    /// <summary>apply_rotary_pos_emb on x [B, heads, T, D] with cos/sin [T, D] or [B|1, T, D].</summary>
    public static Tensor Rope(Tensor x, Tensor cos, Tensor sin)
    {
        var c = (cos.ndim == 2 ? cos.unsqueeze(0) : cos).unsqueeze(1).to(x.dtype);
        var s = (sin.ndim == 2 ? sin.unsqueeze(0) : sin).unsqueeze(1).to(x.dtype);
        return x * c + RotateHalf(x) * s;
    }

    /// <summary>Phi-3's apply_rotary_pos_emb with partial rotary: the first R = cos.shape[-1] features turn, the rest
    /// pass through (<c>cat([rope(x[..., :R]), x[..., R:]], -1)</c>).</summary>
    public static Tensor PartialRope(Tensor x, Tensor cos, Tensor sin)
    {
        var r = cos.shape[^1];
        var rot = x[TensorIndex.Ellipsis, TensorIndex.Slice(0, r)];
        var pass = x[TensorIndex.Ellipsis, TensorIndex.Slice(r)];
        return cat([Rope(rot, cos, sin), pass], -1);
    }

    public static Tensor SwiGlu(Tensor gate, Tensor up) => nn.functional.silu(gate) * up;

    /// <summary>Gemma's MLP activation: <c>gelu(gate, approximate="tanh") * up</c> (hidden_activation gelu_pytorch_tanh).</summary>
    public static Tensor GeGlu(Tensor gate, Tensor up) => nn.functional.gelu(gate, TorchSharp.Modules.GELU.Approximate.tanh) * up;

    /// <summary>Llama's rotary tables for positions 0..T-1: cos/sin of cat(freqs, freqs), float32 [T, D].</summary>
    public static (Tensor Cos, Tensor Sin) RopeTables(long seq, long headDim, double theta = 10000)
    {
        var invFreq = pow(theta, -arange(0, headDim, 2, ScalarType.Float64) / headDim).to(ScalarType.Float32);
        var freqs = outer(arange(seq, ScalarType.Float32), invFreq);
        var emb = cat([freqs, freqs], -1);
        return (emb.cos(), emb.sin());
    }

    /// <summary>|a - b| ≤ ulps units in the last place of b's dtype (relative to |b|) + absolute.</summary>
    public static bool WithinUlpsOrAbs(Tensor actual, Tensor expected, double ulps, double absolute)
    {
        using var scope = NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64);
        var e = expected.detach().cpu().to(ScalarType.Float64);
        var bound = e.abs() * (ulps * UnitRoundoff(expected.dtype)) + absolute;
        return (a - e).abs().le(bound).all().item<bool>();
    }

    /// <summary>The relative size of one ulp: 2^-7 (bf16), 2^-10 (fp16), 2^-23 (float32).</summary>
    public static double UnitRoundoff(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => Math.Pow(2, -7),
        ScalarType.Float16 => Math.Pow(2, -10),
        _ => Math.Pow(2, -23),
    };

    /// <summary>|a - b| ≤ ulps units in the last place of b's dtype (relative to |b|), plus a tiny absolute slack.</summary>
    public static bool WithinUlps(Tensor actual, Tensor expected, double ulps)
    {
        var eps = expected.dtype switch
        {
            ScalarType.BFloat16 => Math.Pow(2, -7),
            ScalarType.Float16 => Math.Pow(2, -10),
            _ => Math.Pow(2, -23),
        };
        using var scope = NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64);
        var e = expected.detach().cpu().to(ScalarType.Float64);
        var bound = e.abs() * (ulps * eps) + 1e-30;
        return (a - e).abs().le(bound).all().item<bool>();
    }
}
