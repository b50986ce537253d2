using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>Builds a <see cref="LlamaForCausalLM"/> with random weights directly on the target device (see
/// <see cref="LlamaForCausalLM.CreateRandom"/>): the same modules as the loader builds, without a file.</summary>
internal static class LlamaRandomInit
{
    private const double InitStd = 0.02;  // transformers' initializer_range for Llama

    public static LlamaForCausalLM Create(LlamaConfig cfg, long seed, LoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        if (cfg.VocabSize < 1 || cfg.HiddenSize < 1 || cfg.IntermediateSize < 1 || cfg.NumHiddenLayers < 1 || cfg.HeadDim < 2 ||
            cfg.NumAttentionHeads < 1 || cfg.NumKeyValueHeads < 1 || cfg.NumAttentionHeads % cfg.NumKeyValueHeads != 0)
            throw new ArgumentException($"config {cfg} has a non-positive size or heads not divisible by key/value heads", nameof(cfg));
        var device = options.Device ?? CPU;
        var dtype = options.ComputeDtype ?? (device.type == TorchSharp.DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32);
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"ComputeDtype must be float32, bfloat16 or float16; got {dtype}", nameof(options));
        var (v, h, inter) = ((long)cfg.VocabSize, (long)cfg.HiddenSize, (long)cfg.IntermediateSize);
        var (qOut, kvOut) = ((long)cfg.NumAttentionHeads * cfg.HeadDim, (long)cfg.NumKeyValueHeads * cfg.HeadDim);
        var built = new List<IDisposable>();
        // Drawn on the CPU (the same weights for a seed on any device; TorchSharp's Generator(seed, cuda) gave a CPU
        // generator that CUDA randn rejected on the H100), then copied over block by block.
        using var gen = new Generator((ulong)seed);
        try
        {
            // Drawn in float32 in row blocks of at most 16M elements, so that a large table (the 1B model's embedding:
            // 128256 × 2048) needs no full-size float32 temporary that the caching allocator would keep.
            Tensor Normal(long rows, long cols)
            {
                var t = empty([rows, cols], dtype, device).DetachFromDisposeScope();
                built.Add(t);
                var block = Math.Max(1, (16L << 20) / cols);
                using var noGrad = no_grad();
                for (long s = 0; s < rows; s += block)
                {
                    using var scope = NewDisposeScope();
                    var r = Math.Min(block, rows - s);
                    t.narrow(0, s, r).copy_(randn([r, cols], ScalarType.Float32, CPU, generator: gen) * InitStd);
                }
                return t;
            }

            Tensor Ones(long n)
            {
                var t = ones(n, dtype, device).DetachFromDisposeScope();
                built.Add(t);
                return t;
            }

            LlamaLinear Proj(string name, long outF, long inF, bool bias)
            {
                var b = bias ? zeros(outF, dtype, device).DetachFromDisposeScope() : null;
                if (b is not null) built.Add(b);
                // Only the weight is made inside the scope: modules built in one would have their parameters
                // (the bias) disposed with it.
                Nf4Weight? q = null;
                Tensor? dense = null;
                using (var scope = NewDisposeScope())
                {
                    var w = (randn([outF, inF], ScalarType.Float32, CPU, generator: gen) * InitStd).to(dtype).to(device);
                    if (options.Quantize)
                    {
                        q = Nf4Weight.Quantize(w);
                        q.DetachFromDisposeScope();
                    }
                    else dense = w.DetachFromDisposeScope();
                }
                var layer = q is not null ? LlamaLinear.Quantized(name, q, b) : LlamaLinear.Dense(name, dense!, b);
                built.Add(layer);
                return layer;
            }

            var embed = new WeightOnly("embed_tokens", Normal(v, h));
            var layers = new List<LlamaDecoderLayer>();
            for (var i = 0; i < cfg.NumHiddenLayers; i++)
            {
                options.Progress?.Report($"layer {i + 1}/{cfg.NumHiddenLayers} (random{(options.Quantize ? ", NF4" : "")})");
                var attn = new LlamaAttention(cfg, Proj("q_proj", qOut, h, cfg.AttentionBias), Proj("k_proj", kvOut, h, cfg.AttentionBias),
                    Proj("v_proj", kvOut, h, cfg.AttentionBias), Proj("o_proj", h, qOut, cfg.AttentionBias));
                var mlp = new LlamaMlp(Proj("gate_proj", inter, h, cfg.MlpBias), Proj("up_proj", inter, h, cfg.MlpBias),
                    Proj("down_proj", h, inter, cfg.MlpBias));
                layers.Add(new LlamaDecoderLayer(i.ToString(System.Globalization.CultureInfo.InvariantCulture), attn, mlp,
                    new LlamaRmsNorm("input_layernorm", Ones(h), cfg.RmsNormEps),
                    new LlamaRmsNorm("post_attention_layernorm", Ones(h), cfg.RmsNormEps)));
            }
            var norm = new LlamaRmsNorm("norm", Ones(h), cfg.RmsNormEps);
            var lmHead = cfg.TieWordEmbeddings ? null : new WeightOnly("lm_head", Normal(v, h));
            return new LlamaForCausalLM(cfg, "", device, dtype, options.Quantize, new LlamaModel(embed, layers, norm), lmHead);
        }
        catch
        {
            foreach (var d in built) d.Dispose();
            throw;
        }
    }
}
