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

        if (Name == "phi3")
            w.Add($"{a}.rope.scaling.original_context_length", GgufValue.U32((uint)LongRopeOriginalContext()));
        w.Add($"{a}.rope.dimension_count", GgufValue.U32((uint)RotaryDimension()));
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
            case "longrope" or "su":
                // llama.cpp reads longrope only in its Phi-3 graph: the factors as two tensors
                // (LongRopeFactors), cos/sin scaled by attn_factor. No scaling type is written: the converter writes
                // none, and llama.cpp picks the factor table by its context size, not by a type.
                if (Name != "phi3")
                    throw new NotSupportedException($"{Config.File}: longrope RoPE scaling is only understood by llama.cpp's phi3 architecture, not {Name}");
                w.Add($"{Name}.rope.scaling.attn_factor", GgufValue.F32((float)LongRopeAttentionFactor()));
                break;
            default:
                throw new NotSupportedException($"{Config.File}: RoPE scaling '{type}' cannot be exported to GGUF yet (supported: default, linear, yarn, llama3, longrope for phi3)");
        }
    }

    /// <summary>The longrope context the model was pretrained with: the top-level original_max_position_embeddings
    /// (Phi-3's place for it), else the RoPE object's, else max_position_embeddings.</summary>
    private int LongRopeOriginalContext() =>
        Config.Int("original_max_position_embeddings")
        ?? (HfModelConfig.Dbl(Config.RopeParameters(), "original_max_position_embeddings") is { } o ? (int)o : Config.ContextLength);

    /// <summary>
    /// The factor longrope multiplies cos and sin by, as transformers computes it (and as llama.cpp's converter writes
    /// it, which ignores an explicit value): an explicit <c>attention_factor</c>, else
    /// sqrt(1 + ln(s) / ln(original)) with s = max_position_embeddings / original when s &gt; 1, else 1.
    /// </summary>
    internal double LongRopeAttentionFactor()
    {
        if (HfModelConfig.Dbl(Config.RopeParameters(), "attention_factor") is { } explicitFactor) return explicitFactor;
        var original = LongRopeOriginalContext();
        var scale = (double)Config.ContextLength / original;
        return scale > 1 ? Math.Sqrt(1 + Math.Log(scale) / Math.Log(original)) : 1.0;
    }

    /// <summary>
    /// longrope's per-frequency divisors as llama.cpp's Phi-3 graph takes them: <c>rope_factors_long.weight</c> and
    /// <c>rope_factors_short.weight</c>, float32 [rotary_dim / 2] each. Null when the model does not use longrope.
    /// </summary>
    public (float[] Long, float[] Short)? LongRopeFactors()
    {
        if (Config.RopeType() is not ("longrope" or "su")) return null;
        var p = Config.RopeParameters()!;
        var rotary = RotaryDimension();
        float[] Read(string key)
        {
            if (p[key] is not System.Text.Json.Nodes.JsonArray a)
                throw new InvalidDataException($"{Config.File}: longrope needs the list '{key}' in {(Config.Root["rope_parameters"] is null ? "rope_scaling" : "rope_parameters")}");
            var values = new float[a.Count];
            for (var i = 0; i < a.Count; i++)
                values[i] = a[i] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<double>(out var d)
                    ? (float)d
                    : throw new InvalidDataException($"{Config.File}: {key}[{i}] is {a[i]?.ToJsonString() ?? "null"}, a number expected");
            if (values.Length != rotary / 2)
                throw new InvalidDataException($"{Config.File}: {key} has {values.Length} entries; the rotary dimension {rotary} needs {rotary / 2}");
            return values;
        }
        return (Read("long_factor"), Read("short_factor"));
    }

    /// <summary>The rotated features per head: head_dim, or partial_rotary_factor · head_dim (Phi-3).</summary>
    private int RotaryDimension()
    {
        var c = Config;
        if (Name != "phi3") return c.HeadDim;
        var partial = c.Dbl("partial_rotary_factor") ?? HfModelConfig.Dbl(c.RopeParameters(), "partial_rotary_factor") ?? 1.0;
        return (int)(partial * c.HeadDim);
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
