#!/usr/bin/env bash
# Round 8, fourth call: the attention walk that fetches the next key while it computes the current one. GPU tests
# (engine parity, PDL bit-equality, the attention kernel against the CPU), the decode benchmark, the same tests
# against the compute_75 build, compute-sanitizer memcheck on the attention and engine tests. After each part the
# results so far are packed into $DEVOUT/r.tgz (when set), so a call cut short still returns them.
set -uo pipefail
OUT="${1:?usage: lease-r8d.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== GPU tests: engine, launch modes, attention"
timeout 90 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&FullyQualifiedName~Inference" > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"
summary "$OUT/tests-gpu.log"; snap
echo "== decode benchmark"
timeout 100 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -E "batch|prefill" "$OUT/decode-bench.log"; snap
echo "== compute_75 build: attention, engine, launch modes"
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 60 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode)" \
    > "$OUT/tests-sm75.log" 2>&1; echo "exit $?"; summary "$OUT/tests-sm75.log"; snap
echo "== memcheck: attention and engine tests"
timeout 70 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 \
    dotnet "$tests" --no-progress --filter "FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpuTests.Llama|FullyQualifiedName~SameBitsAsPlainLaunchesOnTheGroupedKernels" \
    > "$OUT/sanitizer.log" 2>&1; echo "exit $?"
grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" | tail -2; summary "$OUT/sanitizer.log"; snap
