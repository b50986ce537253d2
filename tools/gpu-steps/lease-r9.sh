#!/usr/bin/env bash
# Round 9, first call (branch h-round9, never run on a GPU before): the decoder's norm folds and the attention's
# last-block merge (6 L + 4 launches), and the native GGUF quantizers (sloth_ggml_quantize, `sloth export --device
# cuda`). GPU tests, the decode benchmark, the compute_75 build's tests (longer limit: the driver JIT-compiles the PTX
# first), compute-sanitizer memcheck and racecheck, and the export's speed with the GPU quantizer. Results so far are
# packed into $DEVOUT/r.tgz after each part when DEVOUT is set.
set -uo pipefail
OUT="${1:?usage: lease-r9.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== GPU tests: engine, launch modes, attention, NF4 GEMV, GGUF quantizers"
timeout 150 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~Gguf)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
echo "== decode benchmark"
timeout 100 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -E "batch|prefill|memory" "$OUT/decode-bench.log"; snap
echo "== compute_75 build: engine, attention, launch modes, GGUF quantizers"
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 150 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~GgufNativeQuantizerGpu)" \
    > "$OUT/tests-sm75.log" 2>&1; echo "exit $?"; summary "$OUT/tests-sm75.log"; snap
for tool in memcheck racecheck; do
    echo "== $tool: attention and engine tests"
    timeout 90 compute-sanitizer --tool $tool --target-processes all --error-exitcode 97 \
        dotnet "$tests" --no-progress --filter "FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpuTests.Llama" \
        > "$OUT/sanitizer-$tool.log" 2>&1; echo "exit $?"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitizer-$tool.log" | tail -2; summary "$OUT/sanitizer-$tool.log"; snap
done
echo "== export speed (CPU vs --device cuda quantizer)"
timeout 120 bash tools/gpu-steps/export-speed.sh "$OUT" > /dev/null 2>&1; echo "exit $?"; grep -E "==|exit|stages" "$OUT/export-speed.txt"; snap
# A second call for the export at 8B (make-checkpoint writes ~16 GB; the CPU quantization takes ~15-20 s on 16 cores):
#   EXPORT_PRESET=llama-3.1-8b EXPORT_NF4=0 bash tools/gpu-steps/export-speed.sh OUT
