#!/usr/bin/env bash
# Round 10, third call: the GGUF quantizer GPU tests (x86's NaN results by integer tests), `sloth export` with the C#
# quantizers on the CPU cores against `--device cuda` at the 1B shape (issue 24: "on the GPU where it pays"), the
# Mistral-7B step's peak memory with the first layer's input recomputed from the ids (round 8: 10.86 GB, target
# 10.8), and memcheck on the attention (both merges). The 8B export (EXPORT_PRESET=llama-3.1-8b EXPORT_NF4=0
# bash tools/gpu-steps/export-speed.sh OUT: ~16 GB of checkpoint, minutes) needs a call of its own.
set -uo pipefail
OUT="${1:?usage: lease-r10c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== GGUF quantizer GPU tests"
timeout 60 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&FullyQualifiedName~Gguf" > "$OUT/tests-gpu-gguf.log" 2>&1
echo "exit $?"; summary "$OUT/tests-gpu-gguf.log"; snap
echo "== export speed, 1B (dense and NF4: cpu vs cuda)"
timeout 120 bash tools/gpu-steps/export-speed.sh "$OUT" > /dev/null 2>&1; echo "exit $?"
grep -E "==|exit|stages" "$OUT/export-speed.txt"; snap
echo "== Mistral-7B step, every layer checkpointed"
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 110 dotnet "$bench" --results "$OUT" --suite step-row --shape mistral-7b --path fused --checkpointing 1 \
    > "$OUT/step-mistral.log" 2>&1; echo "exit $?"; grep -oE '"TokensPerSecond":[0-9.]+|"PeakGb":[0-9.]+' "$OUT/step-mistral.log"; snap
echo "== memcheck: attention (both merges) and engine tests"
timeout 100 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 \
    dotnet "$tests" --no-progress --filter "FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeFusionGpuTests.SameBitsAsNoFusionOnTheGroupedKernels" \
    > "$OUT/sanitizer-memcheck.log" 2>&1; echo "exit $?"
grep -E "ERROR SUMMARY" "$OUT/sanitizer-memcheck.log" | tail -1; summary "$OUT/sanitizer-memcheck.log"; snap
