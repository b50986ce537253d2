using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>Builds a <see cref="CausalLM"/> with random weights directly on the target device (see
/// <see cref="CausalLM.CreateRandom"/>): the same modules as the loader builds, without a file.</summary>
internal static class RandomInit
{
    /// <summary>transformers' initializer_range default.</summary>
    internal const double InitStd = 0.02;

    public static CausalLM Create(ModelConfig cfg, long seed, LoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        if (cfg.VocabSize < 1 || cfg.HiddenSize < 1 || cfg.IntermediateSize < 1 || cfg.NumHiddenLayers < 1 || cfg.HeadDim < 2 ||
            cfg.NumAttentionHeads < 1 || cfg.NumKeyValueHeads < 1 || cfg.NumAttentionHeads % cfg.NumKeyValueHeads != 0)
            throw new ArgumentException($"config {cfg} has a non-positive size or heads not divisible by key/value heads", nameof(cfg));
        var (device, dtype) = options.Resolve();
        // Drawn on the CPU (the same weights for a seed on any device; TorchSharp's Generator(seed, cuda) gave a CPU
        // generator that CUDA randn rejected on the H100), then copied over block by block.
        using var gen = new Generator((ulong)seed);
        return DecoderBuilder.Build(cfg, "", device, dtype, options.Quantize, new RandomWeights(cfg, gen, options.Quantize, device, dtype),
            options.Progress, $" (random{(options.Quantize ? ", NF4" : "")})");
    }

    /// <summary>The value a norm weight starts at: 1 (w · x̂), or 0 for Gemma's (1 + w) · x̂.</summary>
    internal static double NormInit(ModelConfig cfg) => cfg.UnitOffsetNorms ? 0 : 1;

    private sealed class RandomWeights(ModelConfig cfg, Generator gen, bool quantize, Device device, ScalarType dtype) : IWeightSource
    {
        public Tensor Dense(string name, long[] shape, TensorRole role)
        {
            if (role == TensorRole.Norm) return full(shape, NormInit(cfg), dtype, device).DetachFromDisposeScope();
            if (role == TensorRole.Bias) return zeros(shape, dtype, device).DetachFromDisposeScope();
            // Drawn in float32 in row blocks of at most 16M elements, so that a large table (the 1B model's embedding:
            // 128256 × 2048) needs no full-size float32 temporary that the caching allocator would keep.
            var (rows, cols) = (shape[0], shape[1]);
            var t = empty(shape, dtype, device).DetachFromDisposeScope();
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

        public Projection Projection(string key, ProjectionSpec spec, Tensor? bias)
        {
            Nf4Weight? q = null;
            Tensor? dense = null;
            // Only the weight is made inside the scope: modules built in one would have their parameters (the bias)
            // disposed with it.
            using (var scope = NewDisposeScope())
            {
                var w = (randn([spec.Out, spec.In], ScalarType.Float32, CPU, generator: gen) * InitStd).to(dtype).to(device);
                if (quantize)
                {
                    q = Nf4Weight.Quantize(w);
                    q.DetachFromDisposeScope();
                }
                else dense = w.DetachFromDisposeScope();
            }
            return q is not null ? Models.Projection.Quantized(spec.Name, q, bias) : Models.Projection.Dense(spec.Name, dense!, bias);
        }
    }
}
