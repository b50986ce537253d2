#!/usr/bin/env bash
# Round 23, call 1 (issue 22): the soft-capped attention's blocks on grouped K/V (no expanded copies, the mask's key
# spans computed once per forward, float32 accumulation without casts) and the loss's GEMM tuning as an option: their
# GPU tests, then Gemma-2-2B's and Llama-3.2-1B's QLoRA step rows. bitsandbytes starts building for call 2 (carry .bnb).
set -uo pipefail
OUT="${1:?usage: lease-r23-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
start_bnb_build
gpu_tests softcap-tests 200 "FullyQualifiedName~Softcap|FullyQualifiedName~Gemma|FullyQualifiedName~RecomputedNorms|FullyQualifiedName~LossTests|FullyQualifiedName~FusedVariant|FullyQualifiedName~TunedGemm"
grep -E "^failed" "$OUT/softcap-tests.log" | head -10
echo "== step rows (default path)"
step_row gemma-2-2b fused
step_row 1b fused
