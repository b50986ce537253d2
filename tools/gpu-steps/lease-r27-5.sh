#!/usr/bin/env bash
# Round 27, third call (issue 25), on main; needs SLOTHSHARP_SM75=1. (1) The compute_75 build's attention tests after
# the sub-warp walk's fix (a masked key's V words zeroed: the second call found NaN in a masked row reaching the output
# through 0 x NaN, TensorCoreWalkNeverReadsMaskedValues failing 4 of 4 there); (2) lease-r27-3's small-batch chunk
# study (64 keys a block at batches up to 4 against 32 and 128, Llama-3.2-1B and Qwen3-1.7B at batch 1 and 4);
# (3) launch bounds for 4 blocks an SM on the tensor-core walk at head_dim 64 only (the first call's lb4 took
# Llama-3.2-1B at batch 64 from 32,498 to 33,637 tokens/s on the even-dealing branch and Qwen3-1.7B, whose walk
# spilled, from 18,898 to 16,781), Llama-3.2-1B at batch 64 against this tree.
set -uo pipefail
OUT="${1:?usage: lease-r27-5.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
line="constexpr int64_t kDecodeMmaSmallMinChunk = 64;"
native_variant m32 src/decode_kernels.h "$line" "constexpr int64_t kDecodeMmaSmallMinChunk = 32;"
native_variant m128 src/decode_kernels.h "$line" "constexpr int64_t kDecodeMmaSmallMinChunk = 128;"
native_variant lb4h64 cuda/decode_attention_kernels.cuh "__global__ void __launch_bounds__(kThreads) attention_kernel" \
    "__global__ void __launch_bounds__(kThreads, kP == 16 \&\& kT == 2 ? 4 : 1) attention_kernel"
start_variant_builds m32 m128 lb4h64
sm75_tests attn-tests-sm75 200 "FullyQualifiedName~DecodeAttentionGpu"
grep -E "^failed" -A8 "$OUT/attn-tests-sm75.log" | head -20
decode_run small-m64 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1,4 --steps 512
wait "${variant_pids[@]}"
decode_run b64-lb4h64 "$(variant_lib lb4h64)" --dequantized --presets llama-3.2-1b --batches 64 --steps 512
decode_run b64-main "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets llama-3.2-1b --batches 64 --steps 512
for v in m32 m128; do
    decode_run "small-$v" "$(variant_lib "$v")" --presets llama-3.2-1b,qwen3-1.7b --batches 1,4 --steps 512
done
SLOTHSHARP_NATIVE_PATH="$(variant_lib lb4h64)" gpu_tests attn-tests-lb4h64 90 "FullyQualifiedName~DecodeAttentionGpu"
