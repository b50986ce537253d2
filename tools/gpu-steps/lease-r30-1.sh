#!/usr/bin/env bash
# Round 30 (issue 25), call 1, on branch r30-attn-cluster: round 28's cluster attention (the walk and the merge in one
# launch), round 30's paired gated tile GEMV (4-warp blocks each walking two warps' shares: one wave of gate/up
# blocks at batch 1-8 instead of two), the q/k preparation's and residual norm's parameter loads before the
# grid-dependency wait, and the wide NF4 GEMM's wave-aware split (nf4_wide_splits), on round 29's main.
# (1) what one kernel boundary costs here: native/tools/sync_latency.cu (never run before);
# (2) the attention, engine, tensor-core GEMV, wide GEMM, fusion and launch-mode GPU tests (the paired kernel must
#     give the unpaired one's bits, which the gated-form tests compare);
# (3) batch 1 and 4 (NF4, 512 new tokens), Qwen3-1.7B and Llama-3.2-1B, on four libraries built here: A (all three),
#     nopair, noclusterattn, base (main's behaviour: neither switch, and main's three files of the preloads, copied
#     untracked into tools/gpu-steps/r30-base before the call, and round 28's split rule); batch 64 on A, noclusterattn (the waves without the cluster) and
#     base; equal digests mean equal bits.
set -uo pipefail
OUT="${1:?usage: lease-r30-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
nocluster=(cuda/decode_attention_kernels.cuh "    if (!clusters_compiled()) return false;" "    if (clusters_compiled() || !clusters_compiled()) return false;"
    cuda/decode_attention.cu "clusters_compiled();" "false;")
nopair=(cuda/nf4_gemv_tiles.cuh "constexpr bool kTileGatedPairs = true;" "constexpr bool kTileGatedPairs = false;")
native_variant noclusterattn "${nocluster[@]}"
native_variant nopair "${nopair[@]}"
nowave=(src/decode_kernels.h "constexpr bool kNf4WideWaveSplits = true;" "constexpr bool kNf4WideWaveSplits = false;")
native_variant base "${nocluster[@]}" "${nopair[@]}" "${nowave[@]}"
# Before the call: mkdir -p tools/gpu-steps/r30-base && for f in decode_ops.cu decode_ops.cuh decode_persistent.cuh; do
#   git show 9ed89d0:native/cuda/$f > tools/gpu-steps/r30-base/$f; done
if [ -f tools/gpu-steps/r30-base/decode_ops.cu ]; then cp tools/gpu-steps/r30-base/* /tmp/nvbase/cuda/; else echo "no r30-base: base keeps the preloads"; fi
start_variant_builds noclusterattn nopair base
( nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/sync_latency native/tools/sync_latency.cu > "$OUT/sync-latency-build.log" 2>&1 \
    && timeout 60 /tmp/sync_latency > "$OUT/sync-latency.txt" 2>&1; echo "sync_latency: exit $?" )
tail -20 "$OUT/sync-latency.txt" 2>/dev/null; snap
gpu_tests tests 200 "FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeAttentionGpu"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
wait "${variant_pids[@]}"
rows="--presets qwen3-1.7b,llama-3.2-1b --batches 1,4 --steps 512"
decode_run a "$SLOTHSHARP_NATIVE_PATH" $rows
decode_run base "$(variant_lib base)" $rows
decode_run nopair "$(variant_lib nopair)" $rows
decode_run noclusterattn "$(variant_lib noclusterattn)" $rows
decode_run a-b64 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
decode_run noclusterattn-b64 "$(variant_lib noclusterattn)" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
decode_run base-b64 "$(variant_lib base)" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
