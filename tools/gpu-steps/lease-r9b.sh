#!/usr/bin/env bash
# Round 9, call 2: h-round9 (norm folds, attention last-block merge, native GGUF quantizers) verified and timed, then
# the same build with h-attn-walk's sub-warp attention walk (the only file that branch changes) rebuilt incrementally
# into a second library, tested and timed in the same lease. Then the export's speed with the GPU quantizer.
set -uo pipefail
OUT="${1:?usage: lease-r9b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== GPU tests (h-round9): engine, launch modes, attention, NF4 GEMV, GGUF quantizers"
timeout 150 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~Gguf)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
mkdir -p "$OUT/round9" "$OUT/walk"
echo "== decode benchmark (h-round9)"
timeout 100 dotnet "$bench" --suite decode --results "$OUT/round9" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -E "batch|prefill|memory" "$OUT/decode-bench.log"; snap
echo "== h-attn-walk: sub-warp attention walk, incremental rebuild"
cp native/cuda/decode_attention.cu /tmp/round9-attention.cu
cp tools/gpu-steps/walk/decode_attention.cu native/cuda/decode_attention.cu
walk=/tmp/walk-lib; mkdir -p $walk
if cmake --build build/native -j 16 > "$OUT/walk-build.log" 2>&1; then
    cp "$(find build/native -name 'libslothsharp.so' | head -1)" $walk/libslothsharp.so
    cp /tmp/round9-attention.cu native/cuda/decode_attention.cu
    echo "== GPU tests (walk): attention, engine, launch modes"
    SLOTHSHARP_NATIVE_PATH=$walk/libslothsharp.so timeout 120 dotnet "$tests" --no-progress \
        --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode)" \
        > "$OUT/tests-gpu-walk.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu-walk.log"; snap
    echo "== decode benchmark (walk)"
    SLOTHSHARP_NATIVE_PATH=$walk/libslothsharp.so timeout 100 dotnet "$bench" --suite decode --results "$OUT/walk" \
        > "$OUT/decode-bench-walk.log" 2>&1; echo "exit $?"
    grep -E "batch|prefill|memory" "$OUT/decode-bench-walk.log"; snap
else
    cp /tmp/round9-attention.cu native/cuda/decode_attention.cu
    echo "walk build FAILED"; grep -B2 -A8 "error" "$OUT/walk-build.log" | head -40; snap
fi
echo "== export speed (CPU vs --device cuda quantizer)"
timeout 100 bash tools/gpu-steps/export-speed.sh "$OUT" > /dev/null 2>&1; echo "exit $?"; grep -E "==|exit|stages" "$OUT/export-speed.txt"; snap
