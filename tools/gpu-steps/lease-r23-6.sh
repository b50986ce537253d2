#!/usr/bin/env bash
# Round 23, call 6 (issue 25): the decode attention's occupancy. Its walk holds 106 registers a thread (Qwen3-1.7B) or
# 128 (Llama-3.2-1B), so 4 blocks of 128 threads fit an SM (round 19: 25% occupancy, about half the issue slots used,
# DRAM at 28%). Native variants of main: __launch_bounds__(128, 5) (at most 96 registers), (128, 6) (80), and 5 with two
# keys in flight instead of three (8 registers fewer before the bound). Attention alone and the whole step at batch 64
# (dense copies, 512 new tokens), main's library first; registers and spills of each build.
set -uo pipefail
OUT="${1:?usage: lease-r23-6.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
lb="__global__ void __launch_bounds__(kThreads) attention_kernel"
native_variant lb5 cuda/decode_attention_kernels.cuh "$lb" "__global__ void __launch_bounds__(kThreads, 5) attention_kernel"
native_variant lb6 cuda/decode_attention_kernels.cuh "$lb" "__global__ void __launch_bounds__(kThreads, 6) attention_kernel"
native_variant d2lb5 cuda/decode_attention_kernels.cuh "$lb" "__global__ void __launch_bounds__(kThreads, 5) attention_kernel" \
    cuda/decode_attention_kernels.cuh "constexpr int kDepth = 3;" "constexpr int kDepth = 2;"
pids=()
for v in lb5 lb6 d2lb5; do
    ( build_native_variant "/tmp/nv$v" "/tmp/nv$v-install" > "$OUT/build-$v.log" 2>&1; echo "build $v: exit $?" ) &
    pids+=($!)
done
wait "${pids[@]}"
for v in main lb5 lb6 d2lb5; do
    lib="/tmp/nv$v-install/runtimes/linux-x64/native/libslothsharp.so"
    [ "$v" = main ] && lib="$SLOTHSHARP_NATIVE_PATH"
    cuobjdump -res-usage "$lib" 2>/dev/null | grep -A1 "attention_kernelILi2ELi[24]ELi[24]ELi[24]E" | grep -oE "REG:[0-9]+|STACK:[0-9]+|LOCAL:[0-9]+" \
        | paste - - - | sed "s/^/$v /" | tee "$OUT/res-usage-$v.txt"
    decode_run "q64attn-$v" "$lib" --dequantized --presets qwen3-1.7b --batches 64 --steps 512 --only Attention
    decode_run "l64attn-$v" "$lib" --dequantized --presets llama-3.2-1b --batches 64 --steps 512 --only Attention
done
