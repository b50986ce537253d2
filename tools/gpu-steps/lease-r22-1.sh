#!/usr/bin/env bash
# Round 22, call 1: the GPU tests of round 21's review commits (with_tile_input on with_input, CompareSteps shared,
# decode8_products shared), not rerun since; where the tile GEMVs stall (Nsight Compute: stall reasons per issued
# instruction and the SASS source page of the gated kernel); Gemma-2-2B's timed steps under Nsight Compute (the
# profile round 18 prepared as lease-r19-gemma-profile.sh: without cuBLASLt's tuning candidates), default path.
set -uo pipefail
OUT="${1:?usage: lease-r22-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
filter="FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeEngineGpu"
gpu_tests tests 200 "$filter"
grep -E "step [0-9]+:|Expected|But was" "$OUT/tests.log" | head -20
echo "== decode, tiles (baseline of this lease)"
timeout 120 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles \
    --presets llama-3.2-1b,qwen3-1.7b --batches 1,8 --results "$OUT/base" > "$OUT/base.log" 2>&1; echo "exit $?"
grep -E "batch" "$OUT/base.log" | grep -v "memory held"; snap
echo "== ncu: the tile kernels, batch 1, stall reasons"
timeout 120 ncu --kernel-name regex:nf4_tile --launch-skip 40 --launch-count 4 --section LaunchStats --section Occupancy \
    --section WarpStateStats --section SourceCounters --section SpeedOfLight \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio --import-source no -o "$OUT/tiles" \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles --presets llama-3.2-1b --batches 1 \
    --steps 20 --results "$OUT/ncu-run" > "$OUT/ncu-tiles.log" 2>&1; echo "ncu exit $?"
ncu -i "$OUT/tiles.ncu-rep" --print-details all > "$OUT/ncu-tiles.txt" 2>&1
grep -E "  void|nf4_tile|Duration|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|stalled_[a-z_]*_per_issue_active" "$OUT/ncu-tiles.txt" \
    | grep -vE " 0(\.0+)?$" | head -90
ncu -i "$OUT/tiles.ncu-rep" --page source --csv --print-source sass --kernel-name regex:gated > "$OUT/ncu-tiles-sass.csv" 2>&1
echo "sass rows: $(wc -l < "$OUT/ncu-tiles-sass.csv")"; gzip -f "$OUT/ncu-tiles-sass.csv" "$OUT/ncu-tiles.txt"; snap
echo "== ncu (timed steps only): gemma-2-2b, two layers, default path"
timeout 200 ncu --profile-from-start off --clock-control none --target-processes all --metrics gpu__time_duration.sum --csv \
    dotnet "$bench" --results "$OUT/prof-fused" --suite step-row --shape gemma-2-2b-prof --path fused --checkpointing 0 \
    --profile-timed > "$OUT/ncu-gemma-fused.csv" 2> "$OUT/ncu-gemma-fused.err"; echo "exit $?"
python3 tools/bench/ncu_kernels.py "$OUT/ncu-gemma-fused.csv" > "$OUT/ncu-gemma-fused-summary.txt"
head -45 "$OUT/ncu-gemma-fused-summary.txt"; gzip -f "$OUT/ncu-gemma-fused.csv"; snap
