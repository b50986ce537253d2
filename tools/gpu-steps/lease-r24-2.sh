#!/usr/bin/env bash
# Round 24, call 2 (issue 25): call 1's fusion row ran None only (decode_run passes --fusions None first); the
# launch-folding fusions at batch 1 on the tile GEMVs, and where nsys lives on this machine.
set -uo pipefail
OUT="${1:?usage: lease-r24-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
SLOTHSHARP_NATIVE_PATH="$SLOTHSHARP_NATIVE_PATH" timeout 200 dotnet "$bench" --suite decode --prefill 0 --fusions None,Norm,AttentionMerge,3 --no-plain \
    --presets llama-3.2-1b,qwen3-1.7b --batches 1 --results "$OUT/fusions-b1" > "$OUT/fusions-b1.log" 2>&1; echo "exit $?"
grep -E "batch" "$OUT/fusions-b1.log" | grep -v "memory held"; snap
ls -d /opt/nvidia* /usr/local/cuda*/ 2>/dev/null; find / -name "nsys" -type f 2>/dev/null | head -3; find / -name "ncu" -type f 2>/dev/null | head -3
