using static TorchSharp.torch;

namespace SlothSharp.Models;

/// <summary>Where <see cref="DecoderBuilder"/> gets each weight (checkpoint files, or random draws).</summary>
internal interface IWeightSource
{
    /// <summary>A dense tensor of the given name and shape in the compute dtype on the target device.</summary>
    Tensor Dense(string name, long[] shape, TensorRole role);

    /// <summary>The projection whose weight is checkpoint key <paramref name="key"/> (NF4 or dense).</summary>
    Projection Projection(string key, ProjectionSpec spec, Tensor? bias);
}

/// <summary>Builds the module tree of a <see cref="CausalLM"/> from <see cref="DecoderLayout"/>'s names, taking every
/// weight from an <see cref="IWeightSource"/>: the one construction loading and random initialization share. On an
/// error everything built so far is disposed.</summary>
internal static class DecoderBuilder
{
    public static CausalLM Build(ModelConfig cfg, string sourceDir, Device device, ScalarType dtype, bool quantized, IWeightSource source,
                                 IProgress<string>? progress, string layerNote)
    {
        var built = new List<IDisposable>();
        T Keep<T>(T d) where T : IDisposable
        {
            built.Add(d);
            return d;
        }
        try
        {
            Tensor Dense(string name, long[] shape, TensorRole role) => Keep(source.Dense(name, shape, role));
            RmsNormModule Norm(string module, string key, long size) =>
                Keep(new RmsNormModule(module, Dense(key, [size], TensorRole.Norm), cfg.RmsNormEps, cfg.UnitOffsetNorms));

            var (v, h) = ((long)cfg.VocabSize, (long)cfg.HiddenSize);
            var embed = Keep(new WeightOnly("embed_tokens", Dense(DecoderLayout.Embedding, [v, h], TensorRole.Embedding)));
            var specs = DecoderLayout.Projections(cfg);
            var layers = new List<DecoderLayer>();
            for (var i = 0; i < cfg.NumHiddenLayers; i++)
            {
                progress?.Report($"layer {i + 1}/{cfg.NumHiddenLayers}{layerNote}");
                var prefix = DecoderLayout.LayerPrefix(i);
                var projections = specs.Select(s =>
                {
                    var bias = s.Bias ? Dense($"{prefix}{s.Path}.bias", [s.Out], TensorRole.Bias) : null;
                    return Keep(source.Projection($"{prefix}{s.Path}.weight", s, bias));
                }).ToList();
                var headNorms = DecoderLayout.HeadNorms(cfg).Select(n => Norm(n, $"{prefix}self_attn.{n}.weight", cfg.HeadDim)).ToList();
                var attn = new SelfAttention(cfg, i, projections.Where((_, k) => specs[k].Parent == "self_attn").ToList(),
                    headNorms.ElementAtOrDefault(0), headNorms.ElementAtOrDefault(1));
                var mlp = new GatedMlp(projections.Where((_, k) => specs[k].Parent == "mlp").ToList(), cfg.Activation);
                var norms = DecoderLayout.LayerNorms(cfg).Select(n => Norm(n, $"{prefix}{n}.weight", h)).ToList();
                layers.Add(Keep(new DecoderLayer(i, attn, mlp, norms)));
            }
            var norm = Norm("norm", DecoderLayout.FinalNorm, h);
            var lmHead = cfg.TieWordEmbeddings ? null : Keep(new WeightOnly("lm_head", Dense(DecoderLayout.LmHead, [v, h], TensorRole.LmHead)));
            progress?.Report("loaded");
            return new CausalLM(cfg, sourceDir, device, dtype, quantized, new DecoderStack(embed, layers, norm), lmHead);
        }
        catch
        {
            foreach (var d in built) d.Dispose();
            throw;
        }
    }
}
