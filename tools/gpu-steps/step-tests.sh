#!/usr/bin/env bash
# Issue 14 (training step) on the GPU: the CUDA fixtures of the tests this work added or touches (leak count across
# training steps, FusedAdamW against optim.AdamW, the SwiGLU + down-projection node, fused vs reference model, NF4+LoRA
# node, trainer resume), without running the whole suite. Run through gpu-run's extra-step hook, e.g. together with the
# step benchmark:
#   SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/step-tests.sh ./build.sh gpu-run $OUT --suite step
# Writes $OUT/step-tests.log.
set -uo pipefail
OUT="${1:?usage: step-tests.sh OUTDIR}"
filter="FullyQualifiedName~TrainingStepMemoryTests|FullyQualifiedName~AutogradHousekeepingTests|FullyQualifiedName~FusedAdamWTests|FullyQualifiedName~SwiGluNf4LoraLinearTests"
filter+="|FullyQualifiedName~LlamaFusedTests|FullyQualifiedName~Nf4LoraLinearTests|FullyQualifiedName~SwiGluTests"
filter+="|FullyQualifiedName~AutogradBaseTests|FullyQualifiedName~BackwardErrorTests|FullyQualifiedName~TrainerTests|FullyQualifiedName~LlamaGpuTests.GradientCheckpointing"
timeout 600 dotnet "$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll" --no-progress --filter "$filter" > "$OUT/step-tests.log" 2>&1
rc=$?
grep -E "^(failed|  total|  failed|  succeeded|  skipped)" "$OUT/step-tests.log" | tail -40
exit $rc
