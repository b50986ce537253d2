#!/usr/bin/env bash
# Round 11, first call (run on branch h-round11, whose bench has the WideRows and Nf4Gemm fusions; h-split-build: the NF4 GEMV and attention kernels compiled in parts; never built by
# nvcc before): the build's critical path (ninja's elapsed-time status: run with NINJA_STATUS="[%f/%t %es] "), the
# GPU tests of the engine, fusions, attention, NF4 GEMV and GGUF quantizers (non-finite CUDA input quantized on the
# CPU since round 10), the decode step's classes alone and left out (--only each / --omit each: where the batch-1
# step's 1.2 ms goes, each NF4 GEMV's own time), and Gemma 2's soft-capped attention with the blocks' key spans.
set -uo pipefail
OUT="${1:?usage: lease-r11.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
grep -E "^\[[0-9]+/[0-9]+ [0-9.]+s\]" "$OUT/native-build.log" | tail -6
echo "== GPU tests: engine, fusions, launch modes, attention, NF4 GEMV, GGUF quantizers"
timeout 120 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~Gguf)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
echo "== the step's kernel classes alone and left out (timing only), Llama-3.2-1B"
timeout 120 dotnet "$bench" --suite decode --presets llama-3.2-1b --prefill 0 --fusions None --omit each --only each --results "$OUT/omit" \
    > "$OUT/decode-omit.log" 2>&1; echo "exit $?"; grep -E "batch" "$OUT/decode-omit.log"; snap
echo "== Gemma 2 soft-capped attention: eager vs blocks over their key spans"
timeout 60 dotnet "$bench" --suite softcap --results "$OUT" > "$OUT/softcap.log" 2>&1; echo "exit $?"; grep -E "eager|blocks" "$OUT/softcap.log"; snap
