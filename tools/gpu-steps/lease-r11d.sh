#!/usr/bin/env bash
# Round 11, fourth call (branch h-attn-block as merged: 128 keys per attention block past batch 4, q/k/v stacked into
# one GEMM past 8 rows): the GPU tests of the engine, attention and NF4 GEMV, then compute-sanitizer memcheck on the
# attention kernel's tests (the new block geometry).
set -uo pipefail
OUT="${1:?usage: lease-r11d.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== GPU tests: engine, fusions, attention, NF4 GEMV"
timeout 100 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
echo "== compute-sanitizer memcheck: attention kernel GPU tests"
timeout 150 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeAttentionGpu)" > "$OUT/sanitizer.log" 2>&1
echo "exit $?"; grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" | tail -2; summary "$OUT/sanitizer.log"; snap
