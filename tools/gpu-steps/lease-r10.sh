#!/usr/bin/env bash
# Round 10, first call (branch h-round9 with the fusion switches): is each fusion worth its launches? GPU tests of the
# engine with every fusion combination (same bits as none), then the decode benchmark timing none / Norm /
# AttentionMerge / All with programmatic launch and none with plain launches, in one lease (round 9 measured only
# All, against main in another lease: batch 1 23% slower, batch 64 6% faster). Then the Mistral-7B step's peak
# memory (main's embedding recompute) and memcheck. The compute_75 build's
# tests need a call of their own (the PTX JIT of the decode kernels took more than 170 s in round 9).
set -uo pipefail
OUT="${1:?usage: lease-r10.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv -l 1 > "$OUT/clocks.csv" 2>&1 &
smi=$!
echo "== GPU tests: engine, fusions, launch modes, attention, NF4 GEMV, GGUF quantizers"
timeout 200 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~Gguf)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
echo "== decode benchmark: fusions one by one, same lease"
timeout 150 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -E "batch|prefill|memory" "$OUT/decode-bench.log"; snap
echo "== Mistral-7B step, every layer checkpointed (the first layer's input now made again from the ids: round 8 peak 10.86 GB, target 10.8)"
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 110 dotnet "$bench" --results "$OUT" --suite step-row --shape mistral-7b --path fused --checkpointing 1 \
    > "$OUT/step-mistral.log" 2>&1; echo "exit $?"; grep -oE '"TokensPerSecond":[0-9.]+|"PeakGb":[0-9.]+' "$OUT/step-mistral.log"; snap
echo "== memcheck: attention (both merges) and engine tests"
timeout 100 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 \
    dotnet "$tests" --no-progress --filter "FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeFusionGpuTests.SameBitsAsNoFusionOnTheGroupedKernels" \
    > "$OUT/sanitizer-memcheck.log" 2>&1; echo "exit $?"
grep -E "ERROR SUMMARY" "$OUT/sanitizer-memcheck.log" | tail -1; summary "$OUT/sanitizer-memcheck.log"
kill $smi 2>/dev/null; snap
