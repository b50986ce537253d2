#!/usr/bin/env bash
# Round 8, second call: programmatic dependent launch (PDL) in the decoding engine. GPU tests (engine parity, PDL vs
# plain bits, NF4 GEMV), the decode benchmark with PDL on and off, the engine tests against the compute_75 build (PDL
# must be off there), compute-sanitizer memcheck on the Sanitize-category decode tests.
set -uo pipefail
OUT="${1:?usage: lease-r8b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== GPU tests: engine, launch modes, NF4 GEMV"
timeout 150 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"
echo "== decode benchmark (PDL on / off)"
timeout 150 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -vE "^\s*$" "$OUT/decode-bench.log" | tail -14
echo "== compute_75 build: engine tests"
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 100 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~Nf4Gemv)" \
    > "$OUT/tests-sm75.log" 2>&1; echo "exit $?"; summary "$OUT/tests-sm75.log"
echo "== memcheck: Sanitize-category tests"
timeout 120 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 \
    dotnet "$tests" --no-progress --filter "TestCategory=Sanitize|FullyQualifiedName~DecodeLaunchModeGpuTests.SameBitsAsPlainLaunchesOnTheGroupedKernels" \
    > "$OUT/sanitizer.log" 2>&1; echo "exit $?"
grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" | tail -2; summary "$OUT/sanitizer.log"
