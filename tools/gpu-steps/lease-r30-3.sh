#!/usr/bin/env bash
# Round 30, call 2 (same lease as call 1): the cluster attention up to batch 8 only (kDecodeClusterMaxBatch); the
# attention and engine GPU tests; Qwen3-1.7B at batch 1, 8, 16, 32 and 64, Llama-3.2-1B at 8 and 64 (NF4, 512 tokens).
set -uo pipefail
OUT="${1:?usage: lease-r30-3.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests 120 "FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeWideNf4Gemm"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
decode_run final "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 1,8,16,32,64 --steps 512
decode_run final-llama "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b --batches 8,64 --steps 512
