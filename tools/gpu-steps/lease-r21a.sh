#!/usr/bin/env bash
# Round 21, call 1 (issues 25 and 22): round 20's two prepared calls as one, the profile first while bitsandbytes
# builds: main's batch-1 NF4 GEMVs under Nsight Compute with warp stall reasons (lease-r20d.sh: memory, shared-memory
# lookups or instruction issue?), then Gemma-2-2B's QLoRA step and transformers + PEFT + bitsandbytes on the same shape
# in the same lease (lease-r20c.sh). Carry .bnb.
set -uo pipefail
OUT="${1:?usage: lease-r21a.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
start_bnb_build
echo "== ncu: batch-1 NF4 GEMVs, Llama-3.2-1B shape"
timeout 200 ncu --kernel-name regex:nf4_gemv --launch-skip 300 --launch-count 8 --section LaunchStats --section Occupancy \
    --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --metrics smsp__average_warp_latency_issue_stalled_mio_throttle,smsp__average_warp_latency_issue_stalled_lg_throttle,smsp__average_warp_latency_issue_stalled_long_scoreboard,smsp__average_warp_latency_issue_stalled_short_scoreboard,smsp__inst_executed_pipe_lsu.sum,smsp__inst_executed.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --presets llama-3.2-1b --batches 1 \
    --steps 40 --results "$OUT/ncu-run1" > "$OUT/ncu-gemv.txt" 2>&1
echo "ncu exit $?"
grep -E "nf4_gemv|Registers Per Thread|Achieved Occupancy|Duration|DRAM Throughput|L1/TEX Cache Throughput|Stall|stalled|Warp Cycles Per Issued|Issue Slots Busy|inst_executed|wavefronts|requests" "$OUT/ncu-gemv.txt" | head -140; snap
dotnet "$sloth" make-checkpoint --preset gemma-2-2b --seed 1 --out /tmp/anchor-gemma > "$OUT/make-checkpoint.log" 2>&1 || echo "make-checkpoint failed"
echo "== Gemma-2-2B step row (default path)"
step_row gemma-2-2b fused
use_bnb
echo "== transformers + PEFT + bitsandbytes, gemma-2-2b"
PYTHONUNBUFFERED=1 timeout 180 python3 tools/bench/hf_step_anchor.py /tmp/anchor-gemma >> "$OUT/anchors.log" 2>&1; echo "anchor exit $?"
grep HFSTEP "$OUT/anchors.log" | tail -1; snap
echo "== Gemma-2-2B step row after the anchor"
step_row gemma-2-2b fused
