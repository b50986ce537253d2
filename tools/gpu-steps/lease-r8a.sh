#!/usr/bin/env bash
# Round 8, first call: the merged h-decode-fuse (grouped NF4 GEMVs, gated epilogue) and the shared gate activation on
# the GPU; the decode benchmark; export speed (CPU vs --device cuda); Llama-3.1-8B QLoRA step rows.
set -uo pipefail
OUT="${1:?usage: lease-r8a.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
lib="build/install/runtimes/linux-x64/native/libslothsharp.so"
echo "== kernel resources"
cuobjdump --dump-resource-usage "$(find build -name libslothsharp.so | head -1)" 2>&1 | grep -A1 -E "nf4_gemv|residual_norm|attention_|qk_prep|dense_gemv" \
    | grep -oE "Function [^ ]+|REG:[0-9]+|SHARED:[0-9]+" | paste - - - | c++filt | cut -c1-220 > "$OUT/kernel-resources.txt"
wc -l "$OUT/kernel-resources.txt"
echo "== GPU tests: engine, NF4 GEMV, gated activations, export on CUDA"
timeout 170 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~SwiGlu|FullyQualifiedName~GeGlu|FullyQualifiedName~Gguf)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"
echo "== decode benchmark"
timeout 150 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -vE "^\s*$" "$OUT/decode-bench.log" | tail -14
echo "== export speed"
timeout 100 bash tools/gpu-steps/export-speed.sh "$OUT" > /dev/null 2>&1; echo "exit $?"; grep -E "==|exit|conversion" "$OUT/export-speed.txt"
echo "== Llama-3.1-8B QLoRA step rows"
for ck in 1 4; do
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 100 dotnet "$bench" --results "$OUT" --suite step-row --shape llama-3.1-8b --path fused --checkpointing $ck >> "$OUT/step-8b.log" 2>&1; echo "exit $?"
done
grep -E "STEPROW|rror" "$OUT/step-8b.log" | cut -c1-400
