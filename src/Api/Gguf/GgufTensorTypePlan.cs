namespace SlothSharp.Gguf;

/// <summary>
/// Chooses each tensor's ggml type for an output type, following llama.cpp's rules so that our q4_k_m file has the
/// same tensor types as <c>llama-quantize model-f32.gguf q4_k_m</c> would give:
/// <list type="bullet">
/// <item>1-D tensors and <c>*_norm.weight</c> stay F32 (llama.cpp never quantizes them; the converter writes them F32).</item>
/// <item>The output matrix (or the token embedding when it is tied to the output) gets Q6_K for quantized types
/// (Q8_0 stays Q8_0), or Q8_0 when its rows are not a multiple of the type's block.</item>
/// <item>q4_k_m / q5_k_m: <c>attn_v</c> (and fused <c>attn_qkv</c>) and <c>ffn_down</c> of the first eighth, the last
/// eighth and every third layer between get Q6_K ("use_more_bits"); a fused <c>attn_qkv</c> counts as an attn_v.</item>
/// <item>Rows that are not a multiple of 256 fall back as llama.cpp does: Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0, and F16
/// when even 32 does not divide them (llama.cpp refuses Q8_0/Q4_0 there; we fall back to F16 too).</item>
/// </list>
/// The layer counters run in the order the tensors are given, as llama.cpp's counters run in file order.
/// </summary>
public static class GgufTensorTypePlan
{
    /// <summary>One entry per tensor (GGUF names, ggml dims), in file order.</summary>
    public static GgmlType[] Choose(IReadOnlyList<(string Name, long[] Dims)> tensors, GgufOutputType output)
    {
        var planner = new Planner(output,
            nAttnV: tensors.Count(t => IsAttnV(t.Name)),
            nFfnDown: tensors.Count(t => t.Name.Contains("ffn_down")),
            tiedEmbeddings: !tensors.Any(t => t.Name == "output.weight"));
        return tensors.Select(t => planner.Next(t.Name, t.Dims)).ToArray();
    }

    /// <summary>The same choice one tensor at a time, for exports that stream tensors: the counts of attn_v/attn_qkv
    /// and ffn_down tensors and whether the embedding is tied must be known up front (one of each per layer).</summary>
    public sealed class Planner(GgufOutputType output, int nAttnV, int nFfnDown, bool tiedEmbeddings)
    {
        private int _iAttnV, _iFfnDown;

        public GgmlType Next(string name, long[] dims)
        {
            if (!Quantizable(name, dims) || output == GgufOutputType.F32) return GgmlType.F32;
            var baseType = output.DefaultTensorType();
            if (!output.IsQuantized()) return baseType;
            var t = baseType;
            var nx = dims[0];
            if (name == "output.weight" || (tiedEmbeddings && name == "token_embd.weight"))
            {
                if (nx % GgmlTypeInfo.BlockSize(t) != 0) t = GgmlType.Q8_0;
                else if (t != GgmlType.Q8_0) t = GgmlType.Q6_K;
            }
            else if (name == "token_embd.weight") { }
            else if (IsAttnV(name))
            {
                // llama.cpp counts a fused attn_qkv as an attn_v (its attn_v rule comes first, so the separate
                // attn_qkv rule never fires for these types).
                if (output is GgufOutputType.Q4_K_M or GgufOutputType.Q5_K_M && UseMoreBits(_iAttnV, nAttnV)) t = GgmlType.Q6_K;
                _iAttnV++;
            }
            else if (name.Contains("ffn_down"))
            {
                if (output is GgufOutputType.Q4_K_M or GgufOutputType.Q5_K_M && UseMoreBits(_iFfnDown, nFfnDown)) t = GgmlType.Q6_K;
                _iFfnDown++;
            }
            return Fallback(t, nx);
        }
    }

    /// <summary>llama.cpp quantizes only 2-D and larger weights that are not norms.</summary>
    public static bool Quantizable(string name, long[] dims) =>
        dims.Length >= 2 && name.EndsWith("weight", StringComparison.Ordinal) && !name.Contains("_norm.weight");

    private static bool IsAttnV(string name) => name.Contains("attn_v.weight") || name.Contains("attn_qkv.weight");

    private static bool UseMoreBits(int i, int n) => i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;

    /// <summary>The type a row of <paramref name="nx"/> elements can take when <paramref name="t"/>'s block does not divide it.</summary>
    public static GgmlType Fallback(GgmlType t, long nx)
    {
        if (nx % GgmlTypeInfo.BlockSize(t) == 0) return t;
        var f = t switch
        {
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => GgmlType.F16,
        };
        return nx % GgmlTypeInfo.BlockSize(f) == 0 ? f : GgmlType.F16;
    }
}
