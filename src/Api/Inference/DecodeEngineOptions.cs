using SlothSharp.Ops;

namespace SlothSharp.Inference;

/// <summary>
/// How a <see cref="DecodeEngine"/> runs a model's LoRA adapters. MergeLora false (default): each adapted projection
/// runs its base weight as it is (NF4 or dense) plus two thin matrix-vector products (A then B·scale), with no extra
/// memory. MergeLora true: the engine makes, once, a dense copy W + scale·B·A of each adapted projection in the compute
/// dtype and runs that instead (no adapter launches per step; the copy costs 2 bytes per weight on the device and,
/// for an NF4 base, four times the bytes read per step).
/// <para>ProgrammaticLaunch true (default): on CUDA, where the kernels support it (a library built for sm_90 running
/// on an H100/H200 or newer), each kernel of the step is launched with programmatic dependent launch: it may start
/// while the previous kernel finishes and fetch its weights before waiting for that kernel's results, which hides
/// part of the per-launch latency that bounds a batch-1 step. False launches each kernel after the previous one has
/// finished (the only mode on older GPUs, the CPU, or a compute_75 build). The results are the same bits either way.
/// <see cref="DecodeEngine.ProgrammaticLaunch"/> says which mode is in force.</para>
/// <para>Fusions (default none): kernels folded into others to save launches (see <see cref="DecodeFusions"/>); the
/// same bits whichever are on.</para>
/// <para>DequantizeWeights (default false): the engine makes, once, a dense copy of every NF4 projection in the compute
/// dtype (the bits the per-step dequantization gives) and runs that. For large batches only: past 8 rows each step
/// otherwise dequantizes every NF4 weight again before its GEMM (writing and reading 2 bytes per weight besides the 0.5
/// it reads), while at batch 1 the NF4 matrix-vector kernel reads 0.5 byte per weight and a dense copy 2. Costs 2 bytes
/// per decoder weight of device memory while the engine lives. Copies (these and MergeLora's) are made stacked where
/// a layer's q, k, v (and its gate, up) all are copies with no adapter left unmerged: one GEMM each instead of three
/// (and two) past 8 rows, the same memory.</para>
/// <para>GemmTuning (default <see cref="GemmTuning.None"/>): past 8 rows on CUDA the step's products are cuBLASLt
/// GEMMs, each with cuBLASLt's first heuristic choice. <see cref="GemmTuning.Heuristic"/> (about 0.1 s a shape, once
/// per process) or <see cref="GemmTuning.Wide"/> (about a second) make the first step of each batch size time
/// cuBLASLt's candidates for each of its GEMM shapes afterwards, so that the graph replayed from the next step on uses
/// the fastest. Off by default because it did not pay where measured (H100, Qwen3-1.7B shape, batch 64: the heuristic's
/// choices were within 1 us of the best candidate but for one shape, and the step was no faster); it may on other GPUs.
/// A tuned choice may sum in another order, so the logits may differ from an untuned run's in the last bits. Batch 8
/// and below, the CPU and float32 never use cuBLASLt here.</para>
/// <para>TensorCoreGemv true (default): on CUDA, at batch 8 and below, the NF4 matrix-vector products run on tensor
/// cores (each weight decoded to the compute dtype in registers, the products summed by mma instructions) where the
/// shape allows it: bf16/f16, an input width that is a multiple of 128 up to 8192 (every projection of the 1–2B
/// shapes; a wider one keeps the other kernel), and a library built for sm_80 or newer.
/// From 9 to 64 rows the same shapes run as tensor-core GEMMs on the 4-bit weights (no dequantized copy; q/k/v and
/// gate/up one launch each). False runs every NF4 product at batch 8 and below on the lane kernels (one warp per row,
/// float32 FMAs), and past 8 rows dequantizes each weight for a cuBLASLt GEMM. Either way the results differ in the
/// float32 summation order only, so the logits may differ in the last bits. Where the persistent step runs
/// (<see cref="DecodeFusions.Persistent"/> on and <see cref="DecodeEngine.PersistentAvailable"/>), the engine uses the
/// lane kernels at every batch size (that step is built from them).</para>
/// </summary>
public sealed record DecodeEngineOptions(bool MergeLora = false, bool ProgrammaticLaunch = true, DecodeFusions Fusions = DecodeFusions.None,
                                         bool DequantizeWeights = false, GemmTuning GemmTuning = GemmTuning.None,
                                         bool TensorCoreGemv = true);
