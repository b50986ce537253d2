#!/usr/bin/env bash
# Prepared in round 26 for the next lease (issue 25), on main: the tensor-core walk's occupancy at head_dim 128,
# where it holds 168 registers a thread (3 blocks of 128 threads an SM; round 26's res-usage.txt):
# variant lb4 (launch bounds for 4 blocks an SM: at most 128 registers, spilling what does not fit) and variant w8
# (8 warps a split instead of 4: twice the tiles in flight per block, half the walk per warp), against this tree on
# Qwen3-1.7B and Llama-3.2-1B at batch 64 (dense copies) and batch 1, 512 new tokens, equal prompts (seeded on the
# CPU since round 26, so equal digests mean equal bits); the attention tests on each variant.
set -uo pipefail
OUT="${1:?usage: lease-r27-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant lb4 cuda/decode_attention_kernels.cuh "__global__ void __launch_bounds__(kThreads) attention_kernel" \
    "__global__ void __launch_bounds__(kThreads, kP == 16 ? 4 : 1) attention_kernel"
native_variant w8 src/decode_kernels.h "constexpr int64_t kDecodeWarpsPerSplit = 4;" "constexpr int64_t kDecodeWarpsPerSplit = 8;"
pids=()
for v in lb4 w8; do
    ( build_native_variant "/tmp/nv$v" "/tmp/nv$v-install" > "$OUT/build-$v.log" 2>&1; echo "build $v: exit $?" ) &
    pids+=($!)
done
lib() { echo "/tmp/nv$1-install/runtimes/linux-x64/native/libslothsharp.so"; }
decode_run b64-main "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
wait "${pids[@]}"
for v in lb4 w8; do
    cuobjdump -res-usage "$(lib "$v")" 2>/dev/null | grep -A1 "ELi16EEEv" | grep -oE "REG:[0-9]+|STACK:[0-9]+" | paste - - | sort | uniq -c
    decode_run "b64-$v" "$(lib "$v")" --dequantized --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
done
decode_run b64-main-again "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b --batches 64 --steps 512
for v in lb4 w8; do
    SLOTHSHARP_NATIVE_PATH="$(lib "$v")" gpu_tests "attn-tests-$v" 90 "FullyQualifiedName~DecodeAttentionGpu"
    decode_run "b1-$v" "$(lib "$v")" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512
done
