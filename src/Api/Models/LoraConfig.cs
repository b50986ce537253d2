namespace SlothSharp.Models;

/// <summary>
/// A LoRA adapter's settings, with PEFT's meaning: rank <c>r</c>, <c>lora_alpha</c>, <c>lora_dropout</c> (on the
/// adapter's input, training only), <c>target_modules</c> (projection names, or null / ["all-linear"] for all seven
/// Llama projections) and <c>use_rslora</c> (scale alpha/√r instead of alpha/r).
/// </summary>
public sealed record LoraConfig(int Rank = 16, double Alpha = 32, double Dropout = 0,
                                IReadOnlyList<string>? TargetModules = null, bool UseRslora = false)
{
    /// <summary>The seven linear projections of a Llama decoder layer, in module order.</summary>
    public static readonly IReadOnlyList<string> AllLinear =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>alpha / r, or alpha / √r with <see cref="UseRslora"/> (PEFT's <c>scaling</c>).</summary>
    public double Scale => UseRslora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>The projections that get adapters, in module order (validated).</summary>
    public IReadOnlyList<string> ResolvedTargets
    {
        get
        {
            if (TargetModules is null || TargetModules.Count == 0 || TargetModules is ["all-linear"]) return AllLinear;
            foreach (var t in TargetModules)
                if (!AllLinear.Contains(t))
                    throw new ArgumentException($"LoRA target '{t}' is not a Llama projection ({string.Join(", ", AllLinear)} or all-linear)", nameof(TargetModules));
            return AllLinear.Where(TargetModules.Contains).ToArray();
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> for a rank &lt; 1, a non-positive alpha, a dropout outside
    /// [0, 1) or an unknown target.</summary>
    public void Validate()
    {
        if (Rank < 1) throw new ArgumentOutOfRangeException(nameof(Rank), Rank, "LoRA rank must be >= 1");
        if (!(Alpha > 0)) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "LoRA alpha must be > 0");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "LoRA dropout must be in [0, 1)");
        _ = ResolvedTargets;
    }
}
