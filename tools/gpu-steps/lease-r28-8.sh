#!/usr/bin/env bash
# Round 28 (issue 25), on branch r28-wide-v3, the session's last ~3 minutes of device time: the wide GEMM's tests on
# the final selection (clusters at batch 9-16, the scratch and a finishing launch past that), then batch 32 and 64 rows
# as far as the call goes.
set -uo pipefail
OUT="${1:?usage: lease-r28-8.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests 60 "FullyQualifiedName~DecodeWideNf4Gemm"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
decode_run wide "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 32,64 --steps 512
