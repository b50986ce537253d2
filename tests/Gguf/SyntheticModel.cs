using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>
/// A random Llama-shaped model under Hugging Face tensor names (float32 CPU tensors) with its config.json, for GGUF
/// tests that need rows of 256 or more (K-quants) or a realistic size (the export benchmark). The tokenizer comes
/// from the tiny Llama's directory, so the vocabulary is 420 tokens unless a larger one is asked for (extra rows get
/// placeholder tokens, as llama.cpp's converter writes them).
/// </summary>
internal sealed class SyntheticModel : IDisposable
{
    public required JsonObject Config { get; init; }
    public required List<KeyValuePair<string, Tensor>> Tensors { get; init; }

    public static SyntheticModel Create(int hidden, int intermediate, int layers, int heads, int kvHeads, int vocab, bool tied, long seed)
    {
        var g = new TorchSharp.torch.Generator((ulong)seed);
        var headDim = hidden / heads;
        var tensors = new List<KeyValuePair<string, Tensor>>();
        Tensor Matrix(long rows, long cols)
        {
            // Weight-like values with per-row scale variation and a few outliers (exercise the K-quant scale search).
            var w = randn([rows, cols], generator: g) * 0.05f;
            w.mul_(rand([rows, 1], generator: g) * 1.5f + 0.25f);
            var mask = rand([rows, cols], generator: g) < 0.002f;
            w = where(mask, w * 8f, w);
            return w.contiguous();
        }
        Tensor Norm(long n) => (ones(n) + randn([n], generator: g) * 0.1f).contiguous();
        var embed = Matrix(vocab, hidden);
        embed[3] = zeros(hidden); // an all-zero row: every block takes the zero branch
        tensors.Add(new("model.embed_tokens.weight", embed));
        for (var i = 0; i < layers; i++)
        {
            var p = $"model.layers.{i}.";
            tensors.Add(new(p + "input_layernorm.weight", Norm(hidden)));
            tensors.Add(new(p + "self_attn.q_proj.weight", Matrix(heads * headDim, hidden)));
            tensors.Add(new(p + "self_attn.k_proj.weight", Matrix(kvHeads * headDim, hidden)));
            tensors.Add(new(p + "self_attn.v_proj.weight", Matrix(kvHeads * headDim, hidden)));
            tensors.Add(new(p + "self_attn.o_proj.weight", Matrix(hidden, heads * headDim)));
            tensors.Add(new(p + "post_attention_layernorm.weight", Norm(hidden)));
            tensors.Add(new(p + "mlp.gate_proj.weight", Matrix(intermediate, hidden)));
            tensors.Add(new(p + "mlp.up_proj.weight", Matrix(intermediate, hidden)));
            tensors.Add(new(p + "mlp.down_proj.weight", Matrix(hidden, intermediate)));
        }
        tensors.Add(new("model.norm.weight", Norm(hidden)));
        if (!tied) tensors.Add(new("lm_head.weight", Matrix(vocab, hidden)));
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = hidden,
            ["intermediate_size"] = intermediate,
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads,
            ["head_dim"] = headDim,
            ["max_position_embeddings"] = 2048,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 500000.0,
            ["tie_word_embeddings"] = tied,
            ["vocab_size"] = vocab,
            ["bos_token_id"] = 0,
            ["eos_token_id"] = 1,
        };
        return new SyntheticModel { Config = config, Tensors = tensors };
    }

    /// <summary>
    /// Writes a minimal SentencePiece-style tokenizer.json of <paramref name="vocabSize"/> tokens (&lt;unk&gt;, &lt;s&gt;,
    /// &lt;/s&gt;, then byte tokens &lt;0x00&gt;, &lt;0x01&gt;, ...) into <paramref name="dir"/>, for exports of
    /// checkpoints that come without a tokenizer and are fed ids directly. It holds &lt;0x0A&gt;, which llama.cpp's SPM
    /// vocabulary needs for its newline token.
    /// </summary>
    public static void WriteByteTokenizer(string dir, int vocabSize)
    {
        if (vocabSize < 3 + 11) throw new ArgumentOutOfRangeException(nameof(vocabSize), "at least 14 tokens (specials and bytes up to 0x0A)");
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (var i = 3; i < vocabSize; i++) vocab[$"<0x{i - 3:X2}>"] = i;
        var added = new JsonArray();
        foreach (var (content, id) in new[] { ("<unk>", 0), ("<s>", 1), ("</s>", 2) })
            added.Add(new JsonObject
            {
                ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            });
        var tok = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["unk_token"] = "<unk>", ["byte_fallback"] = true, ["fuse_unk"] = true,
                ["vocab"] = vocab, ["merges"] = new JsonArray(),
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tok.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["unk_token"] = "<unk>", ["add_bos_token"] = true }.ToJsonString());
    }

    public void Dispose()
    {
        foreach (var (_, t) in Tensors) t.Dispose();
    }
}
