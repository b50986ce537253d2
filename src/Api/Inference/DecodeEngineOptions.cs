namespace SlothSharp.Inference;

/// <summary>
/// How a <see cref="DecodeEngine"/> runs a model's LoRA adapters. MergeLora false (default): each adapted projection
/// runs its base weight as it is (NF4 or dense) plus two thin matrix-vector products (A then B·scale), with no extra
/// memory. MergeLora true: the engine makes, once, a dense copy W + scale·B·A of each adapted projection in the compute
/// dtype and runs that instead (no adapter launches per step; the copy costs 2 bytes per weight on the device and,
/// for an NF4 base, four times the bytes read per step).
/// </summary>
public sealed record DecodeEngineOptions(bool MergeLora = false);
