namespace SlothSharp.Inference;

/// <summary>
/// Kernel classes of a <see cref="DecodeEngine"/>'s step, for <see cref="DecodeEngine.SetOmittedParts"/>: a diagnostic
/// for timing only. No profiler sees inside a replayed CUDA graph on every machine, so the decode benchmark
/// (<c>--omit</c>) times the step without one class at a time and reads each difference as that class's share of the
/// step. A step with any class omitted computes garbage.
/// </summary>
[Flags]
public enum DecodeStepParts
{
    /// <summary>Nothing omitted: the real step.</summary>
    None = 0,
    /// <summary>The residual RMSNorms run as launches of their own (the final norm included).</summary>
    Norm = 1,
    /// <summary>The q/k/v projections (with a folded norm, if <see cref="DecodeFusions.Norm"/> is on).</summary>
    Qkv = 2,
    /// <summary>RoPE, the q/k norms and the KV-cache write.</summary>
    QkPrep = 4,
    /// <summary>The walk over the KV cache and the merge of its partial results.</summary>
    Attention = 8,
    /// <summary>The attention's output projection.</summary>
    O = 16,
    /// <summary>The gate/up projections and the gated activation (with a folded norm, if any).</summary>
    GateUp = 32,
    /// <summary>The down projection.</summary>
    Down = 64,
    /// <summary>The LM head.</summary>
    Head = 128,
    /// <summary>Every class: what remains is the embedding and the length increment.</summary>
    All = 255,
}
