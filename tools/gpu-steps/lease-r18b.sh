#!/usr/bin/env bash
# Round 18, call 2: issue 25's batch-1 lever, the persistent decode step (DecodeFusions.Persistent: the layers as one
# kernel with grid barriers and L2 prefetch of the next phases' weights). Its GPU tests (bits of the launch path on
# every family's architecture at head_dim 64/128), then the batch-1 rows with and without it (same call), then the
# decoding engine's other GPU tests and the one-pass soft-capped kernels' tests (the review refactor of round 17).
set -uo pipefail
OUT="${1:?usage: lease-r18b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests persistent 300 "FullyQualifiedName~DecodePersistent"
grep -E "^\s+(Failed|Error Message)|Assert|differ" "$OUT/persistent.log" | head -20
echo "== decode batch 1, None vs Persistent"
timeout 200 dotnet "$bench" --suite decode --prefill 0 --fusions None,Persistent --no-plain --results "$OUT/decode1" \
    --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512 > "$OUT/decode1.log" 2>&1; echo "exit $?"
grep -E "batch" "$OUT/decode1.log" | grep -v "memory held"; snap
gpu_tests decode-tests 240 "FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeEngine|FullyQualifiedName~DecodeAttention|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~Softcap"
