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

    /// <summary>Whether the projection at <paramref name="modulePath"/> (e.g. "model.layers.0.self_attn.q_proj") gets an
    /// adapter: every projection for all-linear; otherwise PEFT's rule, a target equal to the path or to one of its
    /// dotted suffixes ("q_proj", "self_attn.q_proj", or the full path as PEFT writes all-linear).</summary>
    public bool Targets(string modulePath)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        return IsAllLinear || TargetModules!.Any(t => modulePath == t || modulePath.EndsWith("." + t, StringComparison.Ordinal));
    }

    /// <summary>The projection names of <paramref name="model"/>'s family that get adapters in some layer, in module
    /// order; a target that matches no projection of the model is an <see cref="ArgumentException"/> naming the
    /// family's projections.</summary>
    public IReadOnlyList<string> ResolveTargets(ModelConfig model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var specs = DecoderLayout.Projections(model);
        var all = specs.Select(s => s.Name).ToArray();
        if (IsAllLinear) return all;
        var paths = Enumerable.Range(0, model.NumHiddenLayers)
            .SelectMany(i => specs.Select(s => (Path: DecoderLayout.LayerPrefix(i) + s.Path, s.Name))).ToList();
        foreach (var t in TargetModules!)
            if (!paths.Any(p => p.Path == t || p.Path.EndsWith("." + t, StringComparison.Ordinal)))
                throw new ArgumentException($"LoRA target '{t}' is not a projection of this {model.Family.Name} model ({string.Join(", ", all)} or all-linear)", nameof(TargetModules));
        var used = paths.Where(p => Targets(p.Path)).Select(p => p.Name).ToHashSet();
        return all.Where(used.Contains).ToArray();
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
