#!/usr/bin/env bash
# Round 28 (issue 25), prepared, not run: on branch r28-attn-cluster (main after the wide NF4 GEMM), the attention's
# walk and merge in one launch (sm_90: a (row, kv head)'s splits, at most 16, form a thread-block cluster; any batch).
# (1) The attention, engine, persistent, fusion and launch-mode tests; (2) batch 1, 4 and 64 (NF4), Llama-3.2-1B and
# Qwen3-1.7B, 512 new tokens, against variant noclusterattn (two launches, main's), built while the tests run; equal
# digests mean equal bits.
set -uo pipefail
OUT="${1:?usage: lease-r28-6.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant noclusterattn cuda/decode_attention_kernels.cuh "    if (!clusters_compiled()) return false;" \
    "    if (clusters_compiled() || !clusters_compiled()) return false;" \
    cuda/decode_attention.cu "clusters_compiled();" "false;"
start_variant_builds noclusterattn
gpu_tests tests 200 "FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeAttentionGpu"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
rows="--presets llama-3.2-1b,qwen3-1.7b --batches 1,4,64 --steps 512"
decode_run cluster "$SLOTHSHARP_NATIVE_PATH" $rows
wait "${variant_pids[@]}"
decode_run noclusterattn "$(variant_lib noclusterattn)" $rows
decode_run cluster-dense "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b --batches 64 --steps 512
decode_run noclusterattn-dense "$(variant_lib noclusterattn)" --dequantized --presets qwen3-1.7b --batches 64 --steps 512
