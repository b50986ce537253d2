#!/usr/bin/env bash
# Round 30 (issue 25), the short form of lease-r30-1.sh (for a lease with little device time left), on branch
# r30-attn-cluster: A (the tree: cluster attention, paired gated tile GEMV, preloads before the wait, wave-aware wide
# split) against nopair (A without the paired kernel) and base (main's behaviour; needs tools/gpu-steps/r30-base, see
# lease-r30-1.sh). The same GPU tests; batch 1 on both shapes on the three, batch 64 on A and base.
set -uo pipefail
OUT="${1:?usage: lease-r30-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
nocluster=(cuda/decode_attention_kernels.cuh "    if (!clusters_compiled()) return false;" "    if (clusters_compiled() || !clusters_compiled()) return false;"
    cuda/decode_attention.cu "clusters_compiled();" "false;")
nopair=(cuda/nf4_gemv_tiles.cuh "constexpr bool kTileGatedPairs = true;" "constexpr bool kTileGatedPairs = false;")
nowave=(src/decode_kernels.h "constexpr bool kNf4WideWaveSplits = true;" "constexpr bool kNf4WideWaveSplits = false;")
native_variant nopair "${nopair[@]}"
native_variant base "${nocluster[@]}" "${nopair[@]}" "${nowave[@]}"
if [ -f tools/gpu-steps/r30-base/decode_ops.cu ]; then cp tools/gpu-steps/r30-base/* /tmp/nvbase/cuda/; else echo "no r30-base: base keeps the preloads"; fi
start_variant_builds nopair base
gpu_tests tests 170 "FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeAttentionGpu"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
wait "${variant_pids[@]}"
decode_run a "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 1,64 --steps 512
decode_run base "$(variant_lib base)" --presets qwen3-1.7b,llama-3.2-1b --batches 1,64 --steps 512
decode_run nopair "$(variant_lib nopair)" --presets qwen3-1.7b,llama-3.2-1b --batches 1 --steps 512
