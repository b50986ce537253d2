#!/usr/bin/env bash
# Issues 22-25 in one short lease (the session's device time is 30 minutes): the GPU tests on the sm_90 build, the new
# kernels' GPU tests against the compute_75 PTX build, compute-sanitizer memcheck on the kernel tests, then the QLoRA
# step of every family's published shape. Each part has its own time limit so the results come back even if one
# overruns. Run through gpu-run's extra-step hook:
#   SLOTH_CUDA_ARCHITECTURES=90 SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_BENCH=0 \
#   SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/families-lease.sh ./build.sh gpu-run OUT
set -uo pipefail
OUT="${1:?usage: families-lease.sh OUTDIR}"
tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
lib75="build/sm75-install/runtimes/linux-x64/native/libslothsharp.so"
summary() { grep -E "^\s*(failed|total:|failed:|succeeded:|skipped:)" "$1" | tail -25; }

echo "== GPU tests (sm_90 build)"
timeout "${GPU_TESTS_S:-230}" dotnet "$tests" --no-progress --filter "TestCategory=Gpu" > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"
summary "$OUT/tests-gpu.log"

echo "== new kernels' GPU tests against the compute_75 PTX build"
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 70 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~RmsNorm|FullyQualifiedName~SwiGlu|FullyQualifiedName~Rope|FullyQualifiedName~Nf4Gemv)" \
    > "$OUT/tests-sm75.log" 2>&1; echo "exit $?"
summary "$OUT/tests-sm75.log"

echo "== compute-sanitizer memcheck, new kernels' tests"
timeout 90 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 \
    dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~RmsNormTests|FullyQualifiedName~SwiGluTests|FullyQualifiedName~RopeTests|FullyQualifiedName~Nf4GemvTests)" \
    > "$OUT/sanitizer-memcheck.log" 2>&1; echo "exit $?"
grep -E "ERROR SUMMARY" "$OUT/sanitizer-memcheck.log" | tail -2; summary "$OUT/sanitizer-memcheck.log" | tail -5

echo "== QLoRA step, family shapes"
SLOTHSHARP_STEP_SHAPES="${STEP_SHAPES:-qwen2.5-1.5b,qwen3-1.7b,gemma-3-1b,phi-4-mini,mistral-7b,1b}" timeout "${STEP_S:-230}" \
    dotnet "$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll" --results "$OUT" --suite step > "$OUT/step.log" 2>&1; echo "exit $?"
grep -E "tokens/s|FAILED" "$OUT/step.log" | head -20
