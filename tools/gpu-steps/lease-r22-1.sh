#!/usr/bin/env bash
# Round 22, call 1: the GPU tests of round 21's review commits (with_tile_input on with_input, CompareSteps shared,
# decode8_products shared), not rerun since; where the tile GEMVs stall (Nsight Compute: stall reasons per issued
# instruction and the SASS source page of the gated kernel); Gemma-2-2B's timed steps under Nsight Compute (the
# profile round 18 prepared as lease-r19-gemma-profile.sh: without cuBLASLt's tuning candidates), default path.
set -uo pipefail
OUT="${1:?usage: lease-r22-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests 200 "$tile_gemv_filter"
grep -E "step [0-9]+:|Expected|But was" "$OUT/tests.log" | head -20
echo "== decode, tiles (baseline of this lease)"
timeout 120 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles \
    --presets llama-3.2-1b,qwen3-1.7b --batches 1,8 --results "$OUT/base" > "$OUT/base.log" 2>&1; echo "exit $?"
grep -E "batch" "$OUT/base.log" | grep -v "memory held"; snap
echo "== ncu: the tile kernels, batch 1, stall reasons"
ncu_tiles 120
echo "== ncu (timed steps only): gemma-2-2b, two layers, default path"
step_profile 200 gemma-fused gemma-2-2b-prof fused
