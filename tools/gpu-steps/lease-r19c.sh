#!/usr/bin/env bash
# Round 19, call 2 (issue 25): Nsight Compute on the decode attention kernel at batch 64 (Qwen3-1.7B, dense copies,
# 512-key cache region): occupancy, launch statistics, memory throughput and warp stalls of three launches.
set -uo pipefail
OUT="${1:?usage: lease-r19c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
timeout 200 ncu --kernel-name regex:attention_kernel --launch-skip 600 --launch-count 3 --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --dequantized --presets qwen3-1.7b \
    --batches 64 --steps 300 --gemm-tuning None --results "$OUT/ncu-run" > "$OUT/ncu-attention.txt" 2>&1
echo "exit $?"; grep -E "Duration|Registers|Achieved Occupancy|Theoretical Occupancy|Block Limit|DRAM Throughput|Memory Throughput|Waves|Stall|Shared Memory Configuration Size" "$OUT/ncu-attention.txt" | head -60
