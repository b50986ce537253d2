#!/usr/bin/env bash
# Round 23, call 5 (issue 25): the decode attention's sub-warp walk with its keys in flight in a ring of registers
# indexed by constants (branch r23-attn-ring; A) against main's native tree (B, built here from gpu-b-native/): each
# step of the former walk shifted its three-deep window by register copies, and a copy waits for the register's load.
# Registers and stack of the attention kernels, the decode attention / engine / persistent GPU tests on A, then A/B
# decode rows: Qwen3-1.7B batch 64 (dense copies) step and attention alone, Llama-3.2-1B batch 64, both at batch 1 and 8.
set -uo pipefail
OUT="${1:?usage: lease-r23-5.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
start_main_build
gpu_tests attn-tests 200 "FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeFusion"
grep -E "^failed" "$OUT/attn-tests.log" | head -10
wait "$bpid"; echo "B build: exit $?"
for lib in A:"$SLOTHSHARP_NATIVE_PATH" B:"$libB"; do
    cuobjdump -res-usage "${lib#*:}" 2>/dev/null | grep -A1 "attention_kernel" | grep -oE "Function [^ ]+|REG:[0-9]+|STACK:[0-9]+|LOCAL:[0-9]+" \
        | paste - - - - | sed "s/^/${lib%%:*} /" > "$OUT/res-usage-${lib%%:*}.txt"
done
head -20 "$OUT/res-usage-A.txt"; head -20 "$OUT/res-usage-B.txt"
for round in 1 2; do
    for lib in A:"$SLOTHSHARP_NATIVE_PATH" B:"$libB"; do
        n="${lib%%:*}$round"
        decode_run "q64-$n" "${lib#*:}" --dequantized --presets qwen3-1.7b --batches 64 --steps 512
        decode_run "q64attn-$n" "${lib#*:}" --dequantized --presets qwen3-1.7b --batches 64 --steps 512 --only Attention
    done
done
for lib in A:"$SLOTHSHARP_NATIVE_PATH" B:"$libB"; do
    n="${lib%%:*}"
    decode_run "l64-$n" "${lib#*:}" --dequantized --presets llama-3.2-1b --batches 64 --steps 512
    decode_run "small-$n" "${lib#*:}" --presets llama-3.2-1b,qwen3-1.7b --batches 1,8 --steps 512
done
