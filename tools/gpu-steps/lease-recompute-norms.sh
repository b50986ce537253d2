#!/usr/bin/env bash
# Issue 22 (branch h-recompute-norms, not yet on a GPU): CausalLM.RecomputeNorms (with RecomputeAttention: --path
# fused-recompute) against fused-recompute-attention and the fused default, the QLoRA step of the families' published
# shapes, one process per row so each peak is its own. Phi-4-mini is the target: its input and pre-MLP norm outputs
# (8 × 1,024 tokens × 3,072 × bf16 = 50 MB each, 3.2 GB over 32 layers) are what the option stops keeping. The GPU tests
# first check the same bits on CUDA. About 9 minutes:
#   SLOTHSHARP_SM75=0 SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_BENCH=0 \
#   SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/lease-recompute-norms.sh ./build.sh gpu-run $OUT
set -uo pipefail
OUT="${1:?usage: lease-recompute-norms.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests-gpu 180 "FullyQualifiedName~RecomputedNorms|FullyQualifiedName~Nf4LoraLinear|FullyQualifiedName~LlamaFusedTests"
for s in ${ROW_SHAPES:-phi-4-mini qwen3-1.7b 1b}; do
    for path in fused fused-recompute-attention fused-recompute; do
        PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 dotnet "$bench" --results "$OUT" --suite step-row --shape "$s" \
            --path "$path" --checkpointing 0 >> "$OUT/rows.log" 2>&1; echo "$s $path exit $?"
    done
    grep -oE '"Shape":"[^"]+"|"Path":"[^"]+"|"TokensPerSecond":[0-9.]+|"PeakGb":[0-9.]+' "$OUT/rows.log" | paste - - - - | tail -3; snap
done
