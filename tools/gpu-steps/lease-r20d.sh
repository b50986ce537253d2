#!/usr/bin/env bash
# Round 20, call 2 (issue 25, what is left of the device budget): main's batch-1 NF4 GEMVs under Nsight Compute
# (Llama-3.2-1B shape, two layers' worth: q/k/v group, o, gated gate/up, down), with the warp stall reasons, to see
# whether they wait on memory, on shared-memory lookups or on instruction issue (round 20: streaming grids, which
# overlap DRAM with arithmetic across virtual blocks, were slower, so latency across waves is not the limit).
set -uo pipefail
OUT="${1:?usage: lease-r20d.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
timeout 200 ncu --kernel-name regex:nf4_gemv --launch-skip 300 --launch-count 8 --section LaunchStats --section Occupancy \
    --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --presets llama-3.2-1b --batches 1 \
    --steps 40 --results "$OUT/ncu-run1" > "$OUT/ncu-gemv.txt" 2>&1
echo "ncu exit $?"
grep -E "nf4_gemv|Registers Per Thread|Block Limit Registers|Theoretical Occupancy|Achieved Occupancy|Duration|DRAM Throughput|Grid Size|Stall|Warp Cycles Per Issued|Issue Slots Busy|L1/TEX Hit|L2 Hit" "$OUT/ncu-gemv.txt" | head -120; snap
