#!/usr/bin/env bash
# Round 30 (issue 25), call 1, on branch r30-attn-cluster (round 28's cluster attention on round 29's main):
# (1) what one kernel boundary costs here: native/tools/sync_latency.cu (launches, launches+pdl, grid barrier,
#     counter, flag; never run before);
# (2) the attention, engine, persistent, fusion and launch-mode GPU tests with the cluster kernel;
# (3) batch 1, 4 and 64 (NF4, 512 new tokens), Llama-3.2-1B and Qwen3-1.7B, cluster against variant noclusterattn
#     (main's two launches), built while the tests run; equal digests mean equal bits;
# (4) each class alone at batch 1 (Qwen3-1.7B), main's two launches and the cluster's one.
set -uo pipefail
OUT="${1:?usage: lease-r30-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant noclusterattn cuda/decode_attention_kernels.cuh "    if (!clusters_compiled()) return false;" \
    "    if (clusters_compiled() || !clusters_compiled()) return false;" \
    cuda/decode_attention.cu "clusters_compiled();" "false;"
start_variant_builds noclusterattn
( nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/sync_latency native/tools/sync_latency.cu > "$OUT/sync-latency-build.log" 2>&1 \
    && timeout 60 /tmp/sync_latency > "$OUT/sync-latency.txt" 2>&1; echo "sync_latency: exit $?" )
cat "$OUT/sync-latency.txt" 2>/dev/null | tail -20; snap
gpu_tests tests 200 "FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeAttentionGpu"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
rows="--presets qwen3-1.7b,llama-3.2-1b --batches 1,4,64 --steps 512"
decode_run cluster "$SLOTHSHARP_NATIVE_PATH" $rows
wait "${variant_pids[@]}"
decode_run noclusterattn "$(variant_lib noclusterattn)" $rows
decode_run each-main "$(variant_lib noclusterattn)" --presets qwen3-1.7b --batches 1 --steps 512 --only each
decode_run each-cluster "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 1 --steps 512 --only each
