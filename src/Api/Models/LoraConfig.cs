namespace SlothSharp.Models;

/// <summary>
/// A LoRA adapter's settings, with PEFT's meaning: rank <c>r</c>, <c>lora_alpha</c>, <c>lora_dropout</c> (on the
/// adapter's input, training only), <c>target_modules</c> (projection module names of the model's family, or null /
/// ["all-linear"] for all of them: q/k/v/o/gate/up/down, or Phi-3's qkv/o/gate_up/down) and <c>use_rslora</c> (scale
/// alpha/√r instead of alpha/r).
/// </summary>
public sealed record LoraConfig(int Rank = 16, double Alpha = 32, double Dropout = 0,
                                IReadOnlyList<string>? TargetModules = null, bool UseRslora = false)
{
    /// <summary>alpha / r, or alpha / √r with <see cref="UseRslora"/> (PEFT's <c>scaling</c>).</summary>
    public double Scale => UseRslora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>Whether the targets are "all-linear" (every projection of the model, whatever its family).</summary>
    public bool IsAllLinear => TargetModules is null || TargetModules.Count == 0 || TargetModules is ["all-linear"];

    /// <summary>The targets as given: ["all-linear"] for every projection, or the module names.</summary>
    public IReadOnlyList<string> TargetNames => IsAllLinear ? ["all-linear"] : TargetModules!;

    /// <summary>The projections of <paramref name="model"/>'s family that get adapters, in module order; a target that is
    /// not one of them is an <see cref="ArgumentException"/> naming the family's projections.</summary>
    public IReadOnlyList<string> ResolveTargets(ModelConfig model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var all = DecoderLayout.ProjectionNames(model);
        if (IsAllLinear) return all;
        foreach (var t in TargetModules!)
            if (!all.Contains(t))
                throw new ArgumentException($"LoRA target '{t}' is not a projection of a {model.Family.Name} model ({string.Join(", ", all)} or all-linear)", nameof(TargetModules));
        return all.Where(TargetModules.Contains).ToArray();
    }

    /// <summary>Throws <see cref="ArgumentException"/> for a rank &lt; 1, a non-positive alpha, a dropout outside
    /// [0, 1) or an empty target name (targets are checked against a model by <see cref="ResolveTargets"/>).</summary>
    public void Validate()
    {
        if (Rank < 1) throw new ArgumentOutOfRangeException(nameof(Rank), Rank, "LoRA rank must be >= 1");
        if (!(Alpha > 0)) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "LoRA alpha must be > 0");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "LoRA dropout must be in [0, 1)");
        if (TargetModules is not null && TargetModules.Any(string.IsNullOrWhiteSpace))
            throw new ArgumentException("LoRA target module names must not be empty", nameof(TargetModules));
    }
}
