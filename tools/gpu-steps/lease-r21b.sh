#!/usr/bin/env bash
# Round 21, call 2 (issue 25): the tensor-core NF4 GEMVs (nf4_gemv_tiles.cuh). Their GPU tests (the NF4 GEMV op, the
# engine on tile-sized models against the reference path and the lane kernels, fusions and launch modes with the same
# bits, the persistent step against the lane kernels), then A/B in one library: the decode step with the tiles and
# with the lane kernels (DecodeEngine.SetTensorCoreGemv), batch 1 and 8, Llama-3.2-1B and Qwen3-1.7B; the GEMV
# classes alone; Nsight Compute on both kinds of kernel.
set -uo pipefail
OUT="${1:?usage: lease-r21b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests 200 "FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeEngineGpu"
grep -E "^\s+(Failed|failed) |Expected|But was|step [0-9]+:" "$OUT/tests.log" | head -30
echo "== decode A/B: tiles vs lanes"
timeout 170 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles,lanes \
    --presets llama-3.2-1b,qwen3-1.7b --batches 1,8 --results "$OUT/ab" > "$OUT/ab.log" 2>&1; echo "exit $?"
grep -E "batch|bound" "$OUT/ab.log" | grep -v "memory held"; snap
echo "== the GEMV classes alone, batch 1, Llama-3.2-1B"
timeout 100 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles,lanes --steps 256 \
    --presets llama-3.2-1b --batches 1 --only Qkv,O,GateUp,Down --results "$OUT/only" > "$OUT/only.log" 2>&1; echo "exit $?"
grep -E "ONLY" "$OUT/only.log"; snap
echo "== ncu: the tiles and the lane kernels, batch 1"
timeout 120 ncu --kernel-name regex:nf4_ --launch-skip 300 --launch-count 6 --section SpeedOfLight --section LaunchStats \
    --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles --presets llama-3.2-1b --batches 1 \
    --steps 40 --results "$OUT/ncu-run" > "$OUT/ncu-tiles.txt" 2>&1; echo "ncu exit $?"
grep -E "  void|Registers Per Thread|Achieved Occupancy|Duration|DRAM Throughput|L1/TEX Cache Throughput|Issue Slots Busy|Warp Cycles Per Issued" "$OUT/ncu-tiles.txt" | head -60; snap
