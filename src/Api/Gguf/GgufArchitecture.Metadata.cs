namespace SlothSharp.Gguf;

public sealed partial class GgufArchitecture
{
    /// <summary>
    /// Writes the <c>&lt;arch&gt;.*</c> hyper-parameters under the keys llama.cpp's loader reads (as its converter
    /// writes them for this family).
    /// </summary>
    internal void AddHyperParameters(GgufWriter w)
    {
        var c = Config;
        var a = Name;
        w.Add($"{a}.context_length", GgufValue.U32((uint)c.ContextLength));
        w.Add($"{a}.embedding_length", GgufValue.U32((uint)c.HiddenSize));
        w.Add($"{a}.block_count", GgufValue.U32((uint)c.NumLayers));
        w.Add($"{a}.feed_forward_length", GgufValue.U32((uint)c.IntermediateSize));
        w.Add($"{a}.attention.head_count", GgufValue.U32((uint)c.NumHeads));
        w.Add($"{a}.attention.head_count_kv", GgufValue.U32((uint)c.NumKvHeads));
        w.Add($"{a}.attention.layer_norm_rms_epsilon", GgufValue.F32((float)c.RmsEps));
        if (c.HasExplicitHeadDim || IsGemma)
        {
            w.Add($"{a}.attention.key_length", GgufValue.U32((uint)c.HeadDim));
            w.Add($"{a}.attention.value_length", GgufValue.U32((uint)c.HeadDim));
        }
        if (c.VocabSize is { } vocab) w.Add($"{a}.vocab_size", GgufValue.U32((uint)vocab));

        var rotary = c.HeadDim;
        if (Name == "phi3")
        {
            var partial = c.Dbl("partial_rotary_factor") ?? HfModelConfig.Dbl(c.RopeParameters(), "partial_rotary_factor") ?? 1.0;
            rotary = (int)(partial * c.HeadDim);
            w.Add($"{a}.rope.scaling.original_context_length", GgufValue.U32((uint)(c.Int("original_max_position_embeddings") ?? c.ContextLength)));
        }
        w.Add($"{a}.rope.dimension_count", GgufValue.U32((uint)rotary));
        w.Add($"{a}.rope.freq_base", GgufValue.F32((float)c.RopeTheta()));
        AddRopeScaling(w);

        switch (Name)
        {
            case "gemma2":
                if (c.SlidingWindow is { } sw2) w.Add($"{a}.attention.sliding_window", GgufValue.U32((uint)sw2));
                if (c.Dbl("attn_logit_softcapping") is { } attnCap) w.Add($"{a}.attn_logit_softcapping", GgufValue.F32((float)attnCap));
                if (c.Dbl("final_logit_softcapping") is { } finalCap) w.Add($"{a}.final_logit_softcapping", GgufValue.F32((float)finalCap));
                break;
            case "gemma3":
                if (c.SlidingWindow is { } sw3)
                {
                    w.Add($"{a}.attention.sliding_window", GgufValue.U32((uint)sw3));
                    // llama.cpp assumes Gemma 3's period of 6 (five local layers, one global) unless told otherwise.
                    if (SlidingWindowPeriod() is { } period) w.Add($"{a}.attention.sliding_window_pattern", GgufValue.U32((uint)period));
                    w.Add($"{a}.rope.freq_base_swa", GgufValue.F32((float)c.RopeTheta("sliding_attention", 10000)));
                }
                if (c.Dbl("final_logit_softcapping") is { } cap3) w.Add($"{a}.final_logit_softcapping", GgufValue.F32((float)cap3));
                break;
            case "phi3":
                if (c.SlidingWindow is { } swp) w.Add($"{a}.attention.sliding_window", GgufValue.U32((uint)swp));
                break;
        }
    }

    /// <summary>The period p of config.json's layer_types when it has llama.cpp's shape (layer i slides unless
    /// i mod p = p - 1), else sliding_window_pattern, else null.</summary>
    private int? SlidingWindowPeriod()
    {
        if (Config.Root["layer_types"] is System.Text.Json.Nodes.JsonArray types && types.Count == Config.NumLayers)
        {
            var sliding = types.Select(t => t?.GetValue<string>() == "sliding_attention").ToArray();
            for (var p = 1; p <= sliding.Length + 1; p++)
                if (Enumerable.Range(0, sliding.Length).All(i => sliding[i] == (i % p < p - 1))) return p;
        }
        return Config.Int("sliding_window_pattern");
    }

    /// <summary>Linear and YaRN scaling become metadata; Llama 3's frequency-dependent scaling becomes the
    /// <c>rope_freqs</c> tensor (<see cref="RopeFrequencyFactors"/>). Other schemes are refused rather than silently
    /// giving a model that forgets long contexts.</summary>
    private void AddRopeScaling(GgufWriter w)
    {
        var type = Config.RopeType();
        var p = Config.RopeParameters();
        switch (type)
        {
            case "default" or "llama3":
                break;
            case "linear":
                w.Add($"{Name}.rope.scaling.type", GgufValue.Str("linear"));
                w.Add($"{Name}.rope.scaling.factor", GgufValue.F32((float)(HfModelConfig.Dbl(p, "factor") ?? 1)));
                break;
            case "yarn":
                w.Add($"{Name}.rope.scaling.type", GgufValue.Str("yarn"));
                w.Add($"{Name}.rope.scaling.factor", GgufValue.F32((float)(HfModelConfig.Dbl(p, "factor") ?? 1)));
                if (HfModelConfig.Dbl(p, "original_max_position_embeddings") is { } orig)
                    w.Add($"{Name}.rope.scaling.original_context_length", GgufValue.U32((uint)orig));
                break;
            default:
                throw new NotSupportedException($"{Config.File}: RoPE scaling '{type}' cannot be exported to GGUF yet (supported: default, linear, yarn, llama3)");
        }
    }

    /// <summary>
    /// Llama 3 RoPE scaling as llama.cpp applies it: one divisor per rotary frequency (head_dim/2 of them), 1 for
    /// short wavelengths, the scaling factor for long ones, and a smooth blend between the two thresholds. Null when
    /// the model does not use llama3 scaling.
    /// </summary>
    public float[]? RopeFrequencyFactors()
    {
        if (Config.RopeType() != "llama3") return null;
        var p = Config.RopeParameters()!;
        var factor = HfModelConfig.Dbl(p, "factor") ?? 8;
        var low = HfModelConfig.Dbl(p, "low_freq_factor") ?? 1;
        var high = HfModelConfig.Dbl(p, "high_freq_factor") ?? 4;
        var oldContext = HfModelConfig.Dbl(p, "original_max_position_embeddings") ?? 8192;
        var theta = Config.RopeTheta();
        var dim = Config.HeadDim;
        var lowWavelen = oldContext / low;
        var highWavelen = oldContext / high;
        var factors = new float[dim / 2];
        for (var i = 0; i < dim / 2; i++)
        {
            var freq = 1.0 / Math.Pow(theta, 2.0 * i / dim);
            var wavelen = 2 * Math.PI / freq;
            double f;
            if (wavelen < highWavelen) f = 1;
            else if (wavelen > lowWavelen) f = factor;
            else
            {
                var smooth = (oldContext / wavelen - low) / (high - low);
                f = 1 / ((1 - smooth) / factor + smooth);
            }
            factors[i] = (float)f;
        }
        return factors;
    }
}
