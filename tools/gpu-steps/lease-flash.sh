#!/usr/bin/env bash
# Branch h-softcap-flash: Gemma 2's soft-capped attention as one-pass (flash-attention style) kernels,
# sloth_softcap_flash_forward / _backward (mma.sync m16n8k16 on bf16/f16, online softmax, the scores never in memory),
# in place of the blocks path (cuBLAS matmuls around the row-wise soft-cap/softmax kernels; ~5 ms per Gemma-2-2B layer
# against ~3.6 ms for transformers' eager expression on an H100).
# First GPU run of these kernels (written without a GPU): the Softcap GPU tests (the new kernels against the blocks path
# on CUDA and against their CPU twin, D = 64, 128, 256, odd T and L; determinism; the old SoftcapAttention/SoftcapSoftmax
# tests, which now run through SoftcapAttentionMethod.Auto where they pass no rowsPerBlock), the compute_75 build (the
# flash kernels compile empty there: Auto must fall back to blocks, Flash-only tests are ignored), memcheck and racecheck
# of the new kernels' small tests, then one Gemma-2-2B layer (8 x 1024 tokens, bf16, causal, forward + backward) the
# three ways, each in its own process, and the whole QLoRA step. About 6 minutes.
set -uo pipefail
OUT="${1:?usage: lease-flash.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests-softcap 240 "FullyQualifiedName~Softcap"
sm75_tests tests-softcap-sm75 240 "FullyQualifiedName~SoftcapFlash"
memcheck sanitizer-flash 240 "FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
racecheck racecheck-flash 300 "FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
for method in flash blocks eager; do
    timeout 90 dotnet "$bench" --results "$OUT" --suite softcap-row --method "$method" > "$OUT/softcap-$method.log" 2>&1
    echo "softcap-row $method: exit $?"; grep -E "SOFTCAP" "$OUT/softcap-$method.log" | tail -1; snap
done
# The whole Gemma-2-2B QLoRA step; the fused set now takes the flash kernels (round 10: 19,958 tokens/s at 21.17 GB).
step_row gemma-2-2b fused
