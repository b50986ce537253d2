namespace SlothSharp.Models;

/// <summary>What a checkpoint tensor is, for the code that builds, writes or converts it.</summary>
public enum TensorRole { Embedding, Projection, Bias, Norm, LmHead }

/// <summary>One linear projection of a decoder layer: its module path under the layer (<c>self_attn.q_proj</c>), its
/// [out, in] shape and whether it has a bias.</summary>
public sealed record ProjectionSpec(string Parent, string Name, long Out, long In, bool Bias)
{
    public string Path => $"{Parent}.{Name}";
}

/// <summary>
/// The one template of a decoder's weight names, derived from a <see cref="ModelConfig"/>: the Hugging Face module tree
/// (<c>model.embed_tokens</c>, <c>model.layers.N.self_attn.q_proj</c> or <c>qkv_proj</c>, <c>q_norm</c>,
/// <c>mlp.gate_proj</c> or <c>gate_up_proj</c>, the two or four layer norms, <c>model.norm</c>, <c>lm_head</c>) with
/// shapes. Loading, random init, the checkpoint writer, merging, PEFT adapter keys, LoRA's all-linear and sharding all
/// read names from here, so a family's layout is stated once.
/// </summary>
public static class DecoderLayout
{
    public const string Embedding = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";
    public const string LmHead = "lm_head.weight";

    public static string LayerPrefix(int layer) => $"model.layers.{layer}.";

    /// <summary>The projections of one decoder layer in module order (attention, then MLP).</summary>
    public static IReadOnlyList<ProjectionSpec> Projections(ModelConfig c)
    {
        long h = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, m = c.IntermediateSize;
        var list = new List<ProjectionSpec>();
        if (c.FusedQkv) list.Add(new("self_attn", "qkv_proj", q + 2 * kv, h, c.QkvBias));
        else
        {
            list.Add(new("self_attn", "q_proj", q, h, c.QkvBias));
            list.Add(new("self_attn", "k_proj", kv, h, c.QkvBias));
            list.Add(new("self_attn", "v_proj", kv, h, c.QkvBias));
        }
        list.Add(new("self_attn", "o_proj", h, q, c.OutputBias));
        if (c.FusedGateUp) list.Add(new("mlp", "gate_up_proj", 2 * m, h, c.MlpBias));
        else
        {
            list.Add(new("mlp", "gate_proj", m, h, c.MlpBias));
            list.Add(new("mlp", "up_proj", m, h, c.MlpBias));
        }
        list.Add(new("mlp", "down_proj", h, m, c.MlpBias));
        return list;
    }

    /// <summary>The projection module names (PEFT's "all-linear" targets for this family), in module order.</summary>
    public static IReadOnlyList<string> ProjectionNames(ModelConfig c) => Projections(c).Select(p => p.Name).ToArray();

    /// <summary>The norms of a decoder layer: before attention, then (sandwich) after it, before the MLP, after it; or
    /// (Llama) before attention and before the MLP, the latter named post_attention_layernorm as transformers does.</summary>
    public static IReadOnlyList<string> LayerNorms(ModelConfig c) => c.SandwichNorms
        ? ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"]
        : ["input_layernorm", "post_attention_layernorm"];

    /// <summary>Per-head norms inside self_attn ([head_dim] each).</summary>
    public static IReadOnlyList<string> HeadNorms(ModelConfig c) => c.QkNorm ? ["q_norm", "k_norm"] : [];

    /// <summary>Every checkpoint tensor (dense names) with its shape and role, in save_pretrained's module order.</summary>
    public static IEnumerable<(string Name, long[] Shape, TensorRole Role)> Tensors(ModelConfig c)
    {
        yield return (Embedding, [c.VocabSize, c.HiddenSize], TensorRole.Embedding);
        var projections = Projections(c);
        for (var i = 0; i < c.NumHiddenLayers; i++)
        {
            var p = LayerPrefix(i);
            foreach (var s in projections.Where(s => s.Parent == "self_attn"))
            {
                yield return ($"{p}{s.Path}.weight", [s.Out, s.In], TensorRole.Projection);
                if (s.Bias) yield return ($"{p}{s.Path}.bias", [s.Out], TensorRole.Bias);
            }
            foreach (var n in HeadNorms(c)) yield return ($"{p}self_attn.{n}.weight", [c.HeadDim], TensorRole.Norm);
            foreach (var s in projections.Where(s => s.Parent == "mlp"))
            {
                yield return ($"{p}{s.Path}.weight", [s.Out, s.In], TensorRole.Projection);
                if (s.Bias) yield return ($"{p}{s.Path}.bias", [s.Out], TensorRole.Bias);
            }
            foreach (var n in LayerNorms(c)) yield return ($"{p}{n}.weight", [c.HiddenSize], TensorRole.Norm);
        }
        yield return (FinalNorm, [c.HiddenSize], TensorRole.Norm);
        if (!c.TieWordEmbeddings) yield return (LmHead, [c.VocabSize, c.HiddenSize], TensorRole.LmHead);
    }
}
