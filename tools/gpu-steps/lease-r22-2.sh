#!/usr/bin/env bash
# Round 22, call 2 (issue 25): the tile GEMVs with the scale after the block (branch h-tiles-scaled: a weight is its code
# rounded to the dtype, found two at a time in a 256-entry table of packed pairs; each 64-column block's scale
# multiplies its float32 sum once) against main's tiles (B = main's native tree, carried as gpu-b-native/, built while
# A's tests run). Call 1's profile: main's tiles issue-bound (6.3 instructions a weight, 58% of them the per-weight
# lookup, multiply and conversion).
set -uo pipefail
OUT="${1:?usage: lease-r22-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
start_main_build
filter="FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeEngineGpu"
gpu_tests tests 200 "$filter"
grep -E "step [0-9]+:|Expected|But was|off by" "$OUT/tests.log" | head -20
wait "$bpid"; echo "main's native build: exit $?"; tail -1 "$OUT/build-b.log"
for lib in A B; do
    path="$SLOTHSHARP_NATIVE_PATH"; [ "$lib" = B ] && path="$libB"
    decode_run "ab-$lib" "$path" --gemv tiles --presets llama-3.2-1b,qwen3-1.7b --batches 1,8
done
echo "== classes alone, batch 1, Llama-3.2-1B, A then B"
for lib in A B; do
    path="$SLOTHSHARP_NATIVE_PATH"; [ "$lib" = B ] && path="$libB"
    SLOTHSHARP_NATIVE_PATH="$path" timeout 60 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles \
        --steps 256 --presets llama-3.2-1b --batches 1 --only Qkv,O,GateUp,Down --results "$OUT/only-$lib" > "$OUT/only-$lib.log" 2>&1
    echo "exit $?"; grep -E "ONLY" "$OUT/only-$lib.log"
done
snap
echo "== ncu: A's tile kernels, batch 1"
timeout 100 ncu --kernel-name regex:nf4_tile --launch-skip 40 --launch-count 4 --section LaunchStats --section Occupancy \
    --section WarpStateStats --section SourceCounters --section SpeedOfLight \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio --import-source no -o "$OUT/tiles" \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles --presets llama-3.2-1b --batches 1 \
    --steps 20 --results "$OUT/ncu-run" > "$OUT/ncu-tiles.log" 2>&1; echo "ncu exit $?"
ncu -i "$OUT/tiles.ncu-rep" --print-details all > "$OUT/ncu-tiles.txt" 2>&1
grep -E "  void|Registers Per Thread|Duration|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy" "$OUT/ncu-tiles.txt" | head -40
ncu -i "$OUT/tiles.ncu-rep" --page source --csv --print-source sass --kernel-name regex:gated > "$OUT/ncu-tiles-sass.csv" 2>&1
gzip -f "$OUT/ncu-tiles-sass.csv" "$OUT/ncu-tiles.txt"; rm -f "$OUT/tiles.ncu-rep"; snap
