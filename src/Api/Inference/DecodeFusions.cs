namespace SlothSharp.Inference;

/// <summary>
/// Kernel fusions of a <see cref="DecodeEngine"/>'s step (<see cref="DecodeEngineOptions.Fusions"/>,
/// <see cref="DecodeEngine.SetFusions"/>). Each removes launches by doing their work inside another kernel, and leaves
/// every output bit unchanged; whether that pays depends on the batch size and the GPU. On the H100 (Llama-3.2-1B,
/// bench/results/2026-12-06-h100-round10) each was slower at batch 1 (Norm 653, AttentionMerge 684, both 566 tokens/s
/// against 817 with none) and none was faster at batch 64, and the persistent step (round 18) was slower still at batch 1
/// (1.83 against 1.19 ms a step), so they are off by default; the decode benchmark times each (<c>--fusions</c>) for
/// other GPUs and shapes.
/// </summary>
[Flags]
public enum DecodeFusions
{
    /// <summary>Every norm and merge in a kernel of its own: 9 launches per NF4 layer at batch ≤ 8.</summary>
    None = 0,
    /// <summary>The residual RMSNorm computed inside the grouped NF4 matrix-vector kernel that reads it (q/k/v,
    /// gate/up): 2 launches less per layer, but every block of that kernel normalizes the whole row itself.</summary>
    Norm = 1,
    /// <summary>The attention's partial results merged by the last block to finish each (row, KV head): 1 launch less
    /// per layer; the merge then runs on one block per KV head rather than one per query head.</summary>
    AttentionMerge = 2,
    /// <summary>CUDA, batch 1: the decoder's layers as one persistent kernel whose blocks pass grid-wide barriers
    /// between the phases (the same device code as the launches, so the same bits); the LM head stays a launch of its
    /// own: 2 launches a step instead of 9 per layer. Measured slower than the launches on the H100 (Llama-3.2-1B
    /// 1.83 against 1.19 ms a step, bench/results/2026-12-07-round18: its grid barriers cost 4.4 µs each, and each
    /// phase walks its blocks one after another), so it is off by default and not part of the shipped speed. Only
    /// where <see cref="DecodeEngine.PersistentAvailable"/> (bf16/f16, head_dim 64 or 128, at most 8 query heads per
    /// KV head, every projection NF4 without an unmerged adapter, biases on q/k/v only); other shapes and batch sizes
    /// keep their launches. Norm and AttentionMerge do not apply to a persistent step.</summary>
    Persistent = 4,
    /// <summary>Every fusion: 6 launches per NF4 layer at batch ≤ 8, 2 per step where the persistent step runs.</summary>
    All = Norm | AttentionMerge | Persistent,
}
