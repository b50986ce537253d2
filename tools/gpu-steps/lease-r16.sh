#!/usr/bin/env bash
# Round 16, first call (branch h-round16: main + h-swiglu-vec + h-o-input + h-softcap-kernels), never run on a GPU:
# - the gated activation kernels on 16-byte vectors (round 15: the scalar packed forward 256 us, backward 317 us per
#   Phi-4-mini layer, ~1.6 TB/s);
# - the o projection keeping SDPA's own output instead of its [B, T, H*D] copy (50 MB a Phi-4-mini layer).
# Target (issue 22): Phi-4-mini >= 26,046 tokens/s (2x round 10's anchor) at <= 22.7 GB (35%). Round 15: fused 25,610
# at 25.68 GB, fused-recompute 24,802 at 20.44 GB. Predicted here: fused-recompute-norms (the cheap option alone) near
# both. GPU tests of what changed; the compute_75 build's tests of round 15's new kernels (packed and vector gated
# activation, RoPE: run with SLOTHSHARP_SM75=1); memcheck; the rows. About 7 minutes. Then, on the warm machine,
# lease-softcap.sh (Gemma 2's fused soft-capped softmax kernels).
set -uo pipefail
OUT="${1:?usage: lease-r16.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests-gpu 120 "FullyQualifiedName~SwiGlu|FullyQualifiedName~Nf4LoraLinear|FullyQualifiedName~LlamaFusedTests|FullyQualifiedName~RecomputedNorms"
sm75_tests tests-sm75 200 "FullyQualifiedName~SwiGlu|FullyQualifiedName~RopeTests"
step_row phi-4-mini fused-recompute-norms
step_row phi-4-mini fused
step_row phi-4-mini fused-recompute
memcheck sanitizer 80 "FullyQualifiedName~SwiGlu"
step_row 1b fused
step_row qwen3-1.7b fused
# Issue 25, batch 64 (target 20,000 tokens/s; round 11: Llama 21,141, Qwen3 12,085): DecodeEngineOptions.DequantizeWeights
# (a dense copy of every NF4 projection made once) against the per-step dequantization, same call.
decode_run decode-b64-nf4 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 64 --steps 256
decode_run decode-b64-dequantized "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 64 --steps 256 --dequantized
