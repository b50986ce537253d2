#!/usr/bin/env bash
# Round 10, second call: the compute_75 build (a T4's code path, PTX JIT-compiled on this GPU: more than 170 s of JIT
# in round 9, so this call gives it most of its time) on the decode engine, fusions, attention and GGUF quantizer
# tests; then racecheck on the attention (both merges).
set -uo pipefail
OUT="${1:?usage: lease-r10b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== compute_75 build: attention, engine, fusions, launch modes, GGUF quantizers"
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 300 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeFusionGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~GgufNativeQuantizerGpu)" \
    > "$OUT/tests-sm75.log" 2>&1; echo "exit $?"; summary "$OUT/tests-sm75.log"; snap
echo "== racecheck: attention kernel tests"
timeout 60 compute-sanitizer --tool racecheck --target-processes all --error-exitcode 97 \
    dotnet "$tests" --no-progress --filter "FullyQualifiedName~DecodeAttentionGpu" > "$OUT/sanitizer-racecheck.log" 2>&1; echo "exit $?"
grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$OUT/sanitizer-racecheck.log" | tail -1; summary "$OUT/sanitizer-racecheck.log"; snap
