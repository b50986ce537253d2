namespace SlothSharp.Inference;

/// <summary>
/// Kernel fusions of a <see cref="DecodeEngine"/>'s step (<see cref="DecodeEngineOptions.Fusions"/>,
/// <see cref="DecodeEngine.SetFusions"/>). Each removes launches by doing their work inside another kernel, and leaves
/// every output bit unchanged; whether that pays depends on the batch size and the GPU (on the H100, both together
/// made a batch-1 Llama-3.2-1B step 23% slower and a batch-64 step 6% faster, bench/results/2026-12-06-h100-round9),
/// so they are off by default and the decode benchmark times each.
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
    /// <summary>Both: 6 launches per NF4 layer at batch ≤ 8.</summary>
    All = Norm | AttentionMerge,
}
