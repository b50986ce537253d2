#!/usr/bin/env bash
# Round 10, last call: the kernels compiled in parts (nf4_gemv_part_*.cu, decode_attention_part_*.cu) run the GPU
# tests of the engine, fusions, attention, NF4 GEMV and GGUF quantizers (non-finite CUDA input now quantized on the
# CPU); then Gemma 2's soft-capped attention with the blocks' key spans, eager vs blocks.
set -uo pipefail
OUT="${1:?usage: lease-r10e.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
grep -E "^\[[0-9]+/[0-9]+ [0-9.]+s\]" "$OUT/native-build.log" | tail -4
echo "== GPU tests: engine, fusions, launch modes, attention, NF4 GEMV, GGUF quantizers"
timeout 90 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~Gguf)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
echo "== Gemma 2 soft-capped attention: eager vs blocks over their key spans"
timeout 60 dotnet "$bench" --suite softcap --results "$OUT" > "$OUT/softcap.log" 2>&1; echo "exit $?"; grep -E "eager|blocks" "$OUT/softcap.log"; snap
