#!/usr/bin/env bash
# Round 9, call 3: the GGUF quantizers' NaN fix (sign-bit negation) on the GPU, the decode benchmark again with the
# SM clock logged (call 2's prefill ran 1.4x slower than round 8's on the same kernels, so its batch-1 figures need
# the clock beside them), and the compute_75 build's decode and quantizer tests.
set -uo pipefail
OUT="${1:?usage: lease-r9c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
    --format=csv -l 1 > "$OUT/clocks.csv" 2>&1 &
smi=$!
echo "== GGUF quantizer GPU tests"
timeout 90 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&FullyQualifiedName~Gguf" > "$OUT/tests-gpu-gguf.log" 2>&1
echo "exit $?"; summary "$OUT/tests-gpu-gguf.log"; snap
echo "== decode benchmark (Llama-3.2-1B shape)"
timeout 100 dotnet "$bench" --suite decode --presets llama-3.2-1b --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -E "batch|prefill|memory" "$OUT/decode-bench.log"; snap
echo "== compute_75 build: attention, engine, launch modes, GGUF quantizers"
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 170 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~GgufNativeQuantizerGpu)" \
    > "$OUT/tests-sm75.log" 2>&1; echo "exit $?"; summary "$OUT/tests-sm75.log"
kill $smi 2>/dev/null; snap
