using System.Text.Json.Nodes;

namespace SlothSharp.Models;

/// <summary>
/// Reads a family's RoPE from config.json as transformers does. transformers 5 writes <c>rope_parameters</c>
/// {rope_type, rope_theta, factor, …} (for Gemma 3 one such object per layer type: full_attention, sliding_attention);
/// older versions write <c>rope_theta</c> at the top level and <c>rope_scaling</c> {type | rope_type, …}.
/// <c>partial_rotary_factor</c> may sit at the top level or inside the RoPE object. Types: default, linear, llama3,
/// yarn, longrope; anything else is an error naming the field.
/// </summary>
internal static class RopeReader
{
    public static RopeSpec Read(JsonFields j, JsonObject root, int headDim, int maxPos, string layerType, double thetaDefault)
    {
        string field;
        JsonFields? r = null;
        if (root["rope_parameters"] is JsonObject rp)
        {
            field = "rope_parameters";
            r = j.Object(field);
            // Per layer type (Gemma 3 in transformers 5): {full_attention: {...}, sliding_attention: {...}}.
            if (rp[layerType] is JsonObject) (r, field) = (r.Object(layerType), $"{field}.{layerType}");
            else if (rp["full_attention"] is JsonObject) (r, field) = (r.Object("full_attention"), $"{field}.full_attention");
        }
        else
        {
            field = "rope_scaling";
            if (root["rope_scaling"] is not null) r = j.Object(field);
        }
        var theta = r?.Double("rope_theta") ?? j.Double("rope_theta") ?? thetaDefault;
        if (!(theta > 0)) throw new ModelFormatException(j.File, "rope_theta", $"{theta} must be > 0");
        var partial = r?.Double("partial_rotary_factor") ?? j.Double("partial_rotary_factor") ?? 1.0;
        if (!(partial > 0 && partial <= 1)) throw new ModelFormatException(j.File, "partial_rotary_factor", $"{partial} must be in (0, 1]");
        var dim = (int)(headDim * partial);
        if (r is null) return RopeSpec.Default(theta, partial);
        var type = r.String("rope_type") ?? r.String("type") ?? "default";
        double Factor()
        {
            var f = r.Double("factor", required: true)!.Value;
            return f > 0 ? f : throw new ModelFormatException(j.File, $"{field}.factor", $"{f} must be > 0");
        }
        switch (type)
        {
            case "default":
                return RopeSpec.Default(theta, partial);
            case "linear":
                return new RopeSpec("linear", theta, partial, Factor());
            case "llama3":
            {
                var factor = Factor();
                var low = r.Double("low_freq_factor", required: true)!.Value;
                var high = r.Double("high_freq_factor", required: true)!.Value;
                var orig = r.Int("original_max_position_embeddings", required: true, min: 1)!.Value;
                if (!(high > low) || !(low > 0))
                    throw new ModelFormatException(j.File, $"{field}.high_freq_factor", $"need high_freq_factor {high} > low_freq_factor {low} > 0");
                return new RopeSpec("llama3", theta, partial, factor, low, high, orig);
            }
            case "yarn":
            {
                // As transformers 5: the explicit factor (or, without one, max_position_embeddings / original); the
                // correction range uses original_max_position_embeddings (default max_position_embeddings).
                var orig = r.Int("original_max_position_embeddings", min: 1);
                var factor = r.Has("factor") ? Factor() : orig is { } o ? (double)maxPos / o
                    : throw new ModelFormatException(j.File, $"{field}.factor", "is missing (yarn needs factor or original_max_position_embeddings)");
                var attention = r.Double("attention_factor");
                if (attention is null)
                {
                    var mscale = r.Double("mscale");
                    var mscaleAll = r.Double("mscale_all_dim");
                    attention = mscale is { } m && m != 0 && mscaleAll is { } ma && ma != 0
                        ? YarnMscale(factor, m) / YarnMscale(factor, ma)
                        : YarnMscale(factor, 1);
                }
                return new RopeSpec("yarn", theta, partial, factor, OriginalMaxPositionEmbeddings: orig ?? maxPos, AttentionFactor: attention.Value,
                    BetaFast: r.Double("beta_fast") is { } bf && bf != 0 ? bf : 32, BetaSlow: r.Double("beta_slow") is { } bs && bs != 0 ? bs : 1,
                    Truncate: r.Bool("truncate") ?? true);
            }
            case "longrope":
            {
                var shortF = r.Doubles("short_factor", required: true)!;
                var longF = r.Doubles("long_factor", required: true)!;
                foreach (var (list, name) in new[] { (shortF, "short_factor"), (longF, "long_factor") })
                    if (list.Length != dim / 2)
                        throw new ModelFormatException(j.File, $"{field}.{name}", $"has {list.Length} entries; the rotary dimension {dim} needs {dim / 2}");
                // Phi-3 keeps the pretrained context as a top-level original_max_position_embeddings and uses the
                // ratio to max_position_embeddings as the factor.
                var orig = j.Int("original_max_position_embeddings", min: 1) ?? r.Int("original_max_position_embeddings", min: 1);
                double factor;
                int original;
                if (orig is { } o) (factor, original) = ((double)maxPos / o, o);
                else (factor, original) = (r.Double("factor") ?? 1.0, maxPos);
                var attention = r.Double("attention_factor")
                                ?? (factor <= 1 ? 1.0 : Math.Sqrt(1 + Math.Log(factor) / Math.Log(original)));
                return new RopeSpec("longrope", theta, partial, factor, OriginalMaxPositionEmbeddings: original, AttentionFactor: attention,
                    ShortFactor: shortF, LongFactor: longF);
            }
            default:
                throw new ModelFormatException(j.File, $"{field}.rope_type",
                    $"'{type}' is not supported (SlothSharp implements default, linear, llama3, yarn and longrope)");
        }
    }

    private static double YarnMscale(double scale, double mscale) => scale <= 1 ? 1.0 : 0.1 * mscale * Math.Log(scale) + 1.0;
}
