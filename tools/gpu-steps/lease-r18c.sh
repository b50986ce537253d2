#!/usr/bin/env bash
# Round 18, call 3: why the persistent decode step is slower than the launches (H100, call 1: Llama-3.2-1B batch 1
# 462 against 779 tokens/s). Its phases one at a time (--only each, the other phases' work left out, the grid barriers
# kept) and none at all (--omit All: the barriers alone), then two variants built in this call: 4 blocks per SM
# (__launch_bounds__(256, 4)) and no L2 prefetch, against the same build.
set -uo pipefail
OUT="${1:?usage: lease-r18c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
for v in lb4 nopf; do
    rm -rf "/tmp/$v" && cp -r "gpu-$v-native" "/tmp/$v"
    build_native_variant "/tmp/$v" "/tmp/$v-install" > "$OUT/build-$v.log" 2>&1 &
done
gpu_tests persistent 200 "FullyQualifiedName~DecodePersistent"
echo "== phases of the persistent step (Llama-3.2-1B, batch 1, 256 tokens)"
timeout 200 dotnet "$bench" --suite decode --prefill 0 --fusions None,Persistent --omit-fusions Persistent --only each --omit All \
    --no-plain --results "$OUT/phases" --presets llama-3.2-1b --batches 1 --steps 256 > "$OUT/phases.log" 2>&1; echo "exit $?"
grep -E "batch" "$OUT/phases.log" | grep -v "memory held"; snap
wait
for v in lb4 nopf; do
    tail -2 "$OUT/build-$v.log"
    echo "== variant $v"
    SLOTHSHARP_NATIVE_PATH="/tmp/$v-install/runtimes/linux-x64/native/libslothsharp.so" timeout 150 dotnet "$bench" --suite decode \
        --prefill 0 --fusions None,Persistent --no-plain --results "$OUT/$v" --presets llama-3.2-1b,qwen3-1.7b --batches 1 \
        --steps 256 > "$OUT/$v.log" 2>&1; echo "exit $?"
    grep -E "batch" "$OUT/$v.log" | grep -v "memory held"; snap
done
