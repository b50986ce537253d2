#!/usr/bin/env bash
# Prepared in round 26 for the next lease (issue 25), on main. Qwen3-1.7B at batch 64 and 512 tokens is at 19,135
# tokens/s (20,000 wanted), its attention the largest class. (1) Nsight Compute on the tensor-core walk's kernel at
# batch 64 with a long cache (two launches after ~450 steps: the walk at head_dim 128 holds 168 registers a thread,
# 3 blocks of 128 threads an SM): occupancy, DRAM throughput, warp stalls; (2) variant lb4 (launch bounds for 4 blocks
# an SM: at most 128 registers, spilling what does not fit) against this tree, Qwen3-1.7B and Llama-3.2-1B at batch 64
# (dense copies) and batch 1, 512 new tokens, equal prompts (seeded on the CPU since round 26: equal digests mean
# equal bits), with lb4's attention tests. (A variant with 8 warps a split would hold 1 block of 256 threads an SM at
# 168 registers, fewer warps than now: not tried.)
set -uo pipefail
OUT="${1:?usage: lease-r27-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant lb4 cuda/decode_attention_kernels.cuh "__global__ void __launch_bounds__(kThreads) attention_kernel" \
    "__global__ void __launch_bounds__(kThreads, kP == 16 ? 4 : 1) attention_kernel"
start_variant_builds lb4
libV="$(variant_lib lb4)"
# 285 launches a step at batch 64 (28 attention walks among them): skip ~450 steps' walks.
timeout 240 ncu --kernel-name regex:attention_kernel --launch-skip 12600 --launch-count 2 --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --dequantized --presets qwen3-1.7b \
    --batches 64 --steps 512 --results "$OUT/ncu-run" > "$OUT/ncu-attention.txt" 2>&1
echo "ncu exit $?"; grep -E "attention_kernel|Duration|Registers|Achieved Occupancy|Theoretical Occupancy|Block Limit|DRAM Throughput|Memory Throughput|Waves|stalled_[a-z_]*_per_issue_active" \
    "$OUT/ncu-attention.txt" | grep -vE " 0(\.0+)?$" | head -70; snap
decode_run b64-main "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
wait "${variant_pids[@]}"
cuobjdump -res-usage "$libV" 2>/dev/null | grep -A1 "ELi16EEEv" | grep -oE "REG:[0-9]+|STACK:[0-9]+" | paste - - | sort | uniq -c
decode_run b64-lb4 "$libV" --dequantized --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
decode_run b64-main-again "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b --batches 64 --steps 512
SLOTHSHARP_NATIVE_PATH="$libV" gpu_tests attn-tests-lb4 90 "FullyQualifiedName~DecodeAttentionGpu"
decode_run b1-lb4 "$libV" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512
decode_run b1-main "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512
