#!/usr/bin/env bash
# Round 18, call 4 (warm after call 3): issue 25's batch-64 rows at 512 new tokens (dense copies), then the compute_75
# build's tests of the decode kernels, the one-pass soft-capped kernels and the persistent step (the T4 code path, JIT).
set -uo pipefail
OUT="${1:?usage: lease-r18d.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
decode_run decode64-512 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512 --dequantized
sm75_tests sm75 330 "FullyQualifiedName~Decode|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~Softcap"
