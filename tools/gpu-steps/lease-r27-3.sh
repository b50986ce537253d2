#!/usr/bin/env bash
# Prepared in round 26 for the next lease (issue 25), on main: the tensor-core walk's small-batch chunk. Round 26 took
# 16 keys (sub-warp walk) to 64 (one 16-key tile per warp of a block) and batch 1 gained 15-18%; this times 32 keys
# (two warps of a block idle, twice the blocks) and 128 (two tiles a warp, half the partials to merge) against 64 at
# batch 1 and 4, both presets, 512 new tokens, with each variant's attention tests.
set -uo pipefail
OUT="${1:?usage: lease-r27-3.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
line="constexpr int64_t kDecodeMmaSmallMinChunk = 64;"
native_variant m32 src/decode_kernels.h "$line" "constexpr int64_t kDecodeMmaSmallMinChunk = 32;"
native_variant m128 src/decode_kernels.h "$line" "constexpr int64_t kDecodeMmaSmallMinChunk = 128;"
start_variant_builds m32 m128
decode_run small-m64 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1,4 --steps 512
wait "${variant_pids[@]}"
for v in m32 m128; do
    decode_run "small-$v" "$(variant_lib "$v")" --presets llama-3.2-1b,qwen3-1.7b --batches 1,4 --steps 512
done
decode_run small-m64-again "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512
for v in m32 m128; do SLOTHSHARP_NATIVE_PATH="$(variant_lib "$v")" gpu_tests "attn-tests-$v" 90 "FullyQualifiedName~DecodeAttentionGpu"; done
