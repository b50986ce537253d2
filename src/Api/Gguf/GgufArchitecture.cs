using System.Buffers;
using System.Text.RegularExpressions;

namespace SlothSharp.Gguf;

/// <summary>
/// How one Hugging Face model family maps onto a llama.cpp architecture: the arch name, tensor names, the tensor
/// changes llama.cpp's converter makes (Llama's Q/K row permutation for its RoPE layout, Gemma's norm + 1) and the
/// per-family metadata (sliding windows, soft-caps, q/k norms, partial rotary).
/// </summary>
public sealed partial class GgufArchitecture
{
    /// <summary>Hugging Face model_type → llama.cpp architecture.</summary>
    public static readonly IReadOnlyDictionary<string, string> Supported = new Dictionary<string, string>
    {
        ["llama"] = "llama",
        ["mistral"] = "llama",
        ["qwen2"] = "qwen2",
        ["qwen3"] = "qwen3",
        ["gemma2"] = "gemma2",
        ["gemma3_text"] = "gemma3",
        ["phi3"] = "phi3",
    };

    private GgufArchitecture(HfModelConfig config, string arch)
    {
        Config = config;
        Name = arch;
    }

    internal HfModelConfig Config { get; }
    /// <summary>llama.cpp's architecture name (general.architecture and the metadata key prefix).</summary>
    public string Name { get; }
    public string HfModelType => Config.ModelType;
    public bool IsGemma => Name is "gemma2" or "gemma3";
    /// <summary>llama.cpp's Llama graph expects Q/K rows in the interleaved RoPE order, so the converter permutes them.</summary>
    public bool PermutesQk => Name == "llama";

    /// <summary>Whether the output matrix is the token embedding (no output.weight in the file).</summary>
    public bool TiedEmbeddings => IsGemma || (Config.TieWordEmbeddings ?? false);

    internal static GgufArchitecture For(HfModelConfig config)
    {
        var type = config.ModelType;
        if (type == "gemma3") // the multimodal Gemma 3 config nests the text model
            throw new NotSupportedException($"{config.File}: model_type 'gemma3' (multimodal) is not supported; export the text model (model_type 'gemma3_text')");
        if (!Supported.TryGetValue(type, out var arch))
            throw new NotSupportedException($"{config.File}: model_type '{type}' cannot be exported to GGUF; supported: {string.Join(", ", Supported.Keys)}");
        return new GgufArchitecture(config, arch);
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.(.+)$")]
    private static partial Regex LayerName();

    private static readonly Dictionary<string, string> LayerSuffixes = new()
    {
        ["input_layernorm.weight"] = "attn_norm.weight",
        ["self_attn.q_proj.weight"] = "attn_q.weight",
        ["self_attn.q_proj.bias"] = "attn_q.bias",
        ["self_attn.k_proj.weight"] = "attn_k.weight",
        ["self_attn.k_proj.bias"] = "attn_k.bias",
        ["self_attn.v_proj.weight"] = "attn_v.weight",
        ["self_attn.v_proj.bias"] = "attn_v.bias",
        ["self_attn.o_proj.weight"] = "attn_output.weight",
        ["self_attn.o_proj.bias"] = "attn_output.bias",
        ["self_attn.qkv_proj.weight"] = "attn_qkv.weight",
        ["self_attn.q_norm.weight"] = "attn_q_norm.weight",
        ["self_attn.k_norm.weight"] = "attn_k_norm.weight",
        ["mlp.gate_proj.weight"] = "ffn_gate.weight",
        ["mlp.up_proj.weight"] = "ffn_up.weight",
        ["mlp.down_proj.weight"] = "ffn_down.weight",
        ["mlp.gate_up_proj.weight"] = "ffn_up.weight",  // Phi-3: llama.cpp splits the fused [gate; up] itself
        ["pre_feedforward_layernorm.weight"] = "ffn_norm.weight",
        ["post_feedforward_layernorm.weight"] = "post_ffw_norm.weight",
    };

    /// <summary>The GGUF name of a Hugging Face tensor; null for tensors llama.cpp does not use (rotary caches, an
    /// lm_head tied to the embedding). Unknown names throw: silently dropping a weight would give a broken model.</summary>
    public string? TensorName(string hf)
    {
        if (hf.StartsWith("language_model.", StringComparison.Ordinal)) hf = hf["language_model.".Length..];
        switch (hf)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return TiedEmbeddings ? null : "output.weight";
        }
        if (hf.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)) return null;
        var m = LayerName().Match(hf);
        if (m.Success)
        {
            var suffix = m.Groups[2].Value;
            // Gemma has four norms per layer: post_attention_layernorm is a real post-norm there, while Llama-like
            // families use the name for the pre-FFN norm.
            if (suffix == "post_attention_layernorm.weight")
                return $"blk.{m.Groups[1].Value}.{(IsGemma ? "post_attention_norm.weight" : "ffn_norm.weight")}";
            if (LayerSuffixes.TryGetValue(suffix, out var g)) return $"blk.{m.Groups[1].Value}.{g}";
        }
        throw new InvalidDataException($"tensor '{hf}' has no GGUF name for architecture {Name} (model_type {HfModelType})");
    }

    /// <summary>Applies the converter's changes to a tensor in place. <paramref name="data"/> is row-major with the
    /// Hugging Face shape <paramref name="shape"/> ([out, in] for matrices).</summary>
    public void Transform(string ggufName, Span<float> data, long[] shape)
    {
        if (PermutesQk && ggufName.EndsWith("attn_q.weight", StringComparison.Ordinal))
            PermuteForRope(data, shape, Config.NumHeads);
        else if (PermutesQk && ggufName.EndsWith("attn_k.weight", StringComparison.Ordinal))
            PermuteForRope(data, shape, Config.NumKvHeads);
        else if (PermutesQk && ggufName.EndsWith("attn_q.bias", StringComparison.Ordinal))
            PermuteForRope(data, [shape[0], 1], Config.NumHeads);
        else if (PermutesQk && ggufName.EndsWith("attn_k.bias", StringComparison.Ordinal))
            PermuteForRope(data, [shape[0], 1], Config.NumKvHeads);
        else if (IsGemma && ggufName.EndsWith("norm.weight", StringComparison.Ordinal))
            for (var i = 0; i < data.Length; i++) data[i] += 1f; // Gemma's RMSNorm scales by (1 + w); llama.cpp by w
    }

    /// <summary>
    /// Hugging Face Llama rotates the two halves of each head ([x0..x(d/2-1)] with [x(d/2)..]); llama.cpp's Llama
    /// rotates adjacent pairs. Reordering each head's rows from (half, i) to (i, half) makes the two agree.
    /// </summary>
    internal static void PermuteForRope(Span<float> data, long[] shape, int heads)
    {
        var rows = (int)shape[0];
        var cols = shape.Length > 1 ? (int)shape[1] : 1;
        if (rows % (2 * heads) != 0)
            throw new InvalidDataException($"cannot permute {rows} rows for RoPE over {heads} heads: rows are not a multiple of 2·heads");
        var half = rows / heads / 2;
        // A pooled copy of the source: q/k projections come once per layer, so a fresh array each time is avoidable garbage.
        var src = ArrayPool<float>.Shared.Rent(data.Length);
        try
        {
            data.CopyTo(src);
            for (var h = 0; h < heads; h++)
                for (var part = 0; part < 2; part++)
                    for (var i = 0; i < half; i++)
                    {
                        var from = h * 2 * half + part * half + i;
                        var to = h * 2 * half + i * 2 + part;
                        src.AsSpan(from * cols, cols).CopyTo(data.Slice(to * cols, cols));
                    }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(src);
        }
    }
}
