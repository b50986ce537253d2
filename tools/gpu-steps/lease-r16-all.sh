#!/usr/bin/env bash
# Round 16, one call for everything h-round16 holds (two earlier scripts that never ran, reordered by what the issues
# need first, so that a call cut at its limit still returns the most important results: every step snaps $OUT).
# 1. GPU tests of what changed (the vector gated activation, the o projection on the heads, the soft-capped softmax).
# 2. Issue 22: Phi-4-mini (>= 26,046 tokens/s at <= 22.7 GB), then Gemma-2-2B's step with the fused soft-capped
#    softmax (round 10: 19,958 tokens/s at 21.17 GB).
# 3. Issue 25: batch 64 with and without DequantizeWeights (target 20,000; round 11: Llama 21,141, Qwen3 12,085).
# 4. The sanitizers on the new kernels, the softcap-row methods, the other rows.
set -uo pipefail
OUT="${1:?usage: lease-r16-all.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests-gpu 200 "FullyQualifiedName~SwiGlu|FullyQualifiedName~Nf4LoraLinear|FullyQualifiedName~LlamaFusedTests|FullyQualifiedName~RecomputedNorms|FullyQualifiedName~Softcap"
step_row phi-4-mini fused-recompute-norms
step_row phi-4-mini fused
for method in flash blocks; do
    timeout 90 dotnet "$bench" --results "$OUT" --suite softcap-row --method "$method" > "$OUT/softcap-$method.log" 2>&1
    echo "softcap-row $method: exit $?"; grep -E "SOFTCAP" "$OUT/softcap-$method.log" | tail -1; snap
done
step_row gemma-2-2b fused
decode_run decode-b64-nf4 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 64 --steps 256
decode_run decode-b64-dequantized "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 64 --steps 256 --dequantized
memcheck sanitizer 150 "FullyQualifiedName~SwiGlu|FullyQualifiedName~SoftcapSoftmaxTests|FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
racecheck racecheck-softcap 200 "FullyQualifiedName~SoftcapSoftmaxTests|FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
timeout 90 dotnet "$bench" --results "$OUT" --suite softcap-row --method eager > "$OUT/softcap-eager.log" 2>&1
echo "softcap-row eager: exit $?"; grep -E "SOFTCAP" "$OUT/softcap-eager.log" | tail -1; snap
step_row phi-4-mini fused-recompute
step_row 1b fused
step_row qwen3-1.7b fused
