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
gpu_tests tests 200 "$tile_gemv_filter"
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
ncu_tiles 100
