namespace SlothSharp.Ops;

/// <summary>How <see cref="SoftcapAttention"/> computes.</summary>
public enum SoftcapAttentionMethod
{
    /// <summary>What the fused kernel set uses: today the blocks (the one-pass kernels measured 1.5% faster in a
    /// Gemma-2-2B step on the H100 and 2.6% slower on the H200, see <see cref="SoftcapAttention"/>).</summary>
    Auto = 0,
    /// <summary>Blocks of query rows: cuBLAS matmuls around the row-wise soft-cap/softmax kernels, the scores of one
    /// block at a time in memory; the eager expression's roundings.</summary>
    Blocks = 1,
    /// <summary>The one-pass (flash-attention style) kernels: the scores never reach memory; on the CPU their float32
    /// twin (tests).</summary>
    Flash = 2,
}
