#!/usr/bin/env bash
# Round 11, second call (branch h-attn-block): the attention's warps merged inside their block (one partial per split
# and head instead of four) and, on the GEMM path (batch > 8), q/k/v and gate/up dequantized one under the other into
# one GEMM each. GPU tests of the engine and attention, compute-sanitizer memcheck on the attention and engine tests,
# then the decode benchmark (none and the last-block merge, both models, batch 1 and 64) and the step's classes alone.
set -uo pipefail
OUT="${1:?usage: lease-r11b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== GPU tests: engine, fusions, attention, NF4 GEMV"
timeout 150 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
echo "== decode: none and the last-block merge, both models, batch 1 and 64, same lease"
timeout 150 dotnet "$bench" --suite decode --presets llama-3.2-1b,qwen3-1.7b --prefill 0 --batches 1,64 --fusions None,AttentionMerge --results "$OUT/decode" \
    > "$OUT/decode.log" 2>&1; echo "exit $?"; grep -E "batch" "$OUT/decode.log" | grep -v "memory held"; snap
echo "== the step's classes alone, Llama-3.2-1B (timing only)"
timeout 100 dotnet "$bench" --suite decode --presets llama-3.2-1b --prefill 0 --batches 1,64 --fusions None --only each --results "$OUT/only" \
    > "$OUT/decode-only.log" 2>&1; echo "exit $?"; grep -E "ONLY" "$OUT/decode-only.log"; snap
echo "== compute-sanitizer memcheck: attention and engine GPU tests"
timeout 150 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeAttention|FullyQualifiedName~DecodeEngineGpu)" > "$OUT/sanitizer.log" 2>&1
echo "exit $?"; grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" | tail -2; summary "$OUT/sanitizer.log"; snap
