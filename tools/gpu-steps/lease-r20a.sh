#!/usr/bin/env bash
# Round 20, call 1 (issue 25). Tree A = main + h-attn-async (the batch-64 attention walk's keys in a shared-memory ring
# filled by cp.async) + h-gemv-stream (the NF4 GEMVs as streaming grids). B = main's native tree (gpu-b-native/, built
# here). Variants of A built here: nostream (kStreamBlocks = false: A's GEMVs as main's) and c512 (512-key chunks).
# GPU tests first (bits: decode attention, engine, fusions, persistent step against the streaming launches, NF4 GEMV),
# then batch 1 (fusion sets None, Norm, Norm|AttentionMerge) and batch 64 (dense copies, 512 new tokens).
set -uo pipefail
OUT="${1:?usage: lease-r20a.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
start_main_build
native_variant nostream cuda/nf4_gemv_kernels.cuh "constexpr bool kStreamBlocks = true;" "constexpr bool kStreamBlocks = false;"
native_variant c512 src/decode_kernels.h "constexpr int64_t kDecodeMinChunk = 128;" "constexpr int64_t kDecodeMinChunk = 512;"
( wait "$bpid"; for v in nostream c512; do build_native_variant "/tmp/nv$v" "/tmp/nv$v-install" || echo "variant $v failed"; done ) > "$OUT/build-variants.log" 2>&1 &
vpid=$!
gpu_tests tests 280 "FullyQualifiedName~DecodeAttention|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeFusionGpu|FullyQualifiedName~Softcap|FullyQualifiedName~Nf4Gemv"
grep -E "^\s+Failed |Assert|Expected|But was" "$OUT/tests.log" | head -20
wait "$bpid"; echo "main build: exit $?"
batch1() {  # NAME LIB
    echo "== batch 1 $1"
    SLOTHSHARP_NATIVE_PATH="$2" timeout 120 dotnet "$bench" --suite decode --prefill 0 --fusions None,Norm,3 --no-plain \
        --results "$OUT/$1" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512 > "$OUT/$1.log" 2>&1; echo "exit $?"
    grep -E "batch 1," "$OUT/$1.log"; snap
}
batch1 A1 "$SLOTHSHARP_NATIVE_PATH"
batch1 B1 "$libB"
decode_run A64 "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b --batches 64 --steps 512 --only Attention
decode_run B64 "$libB" --dequantized --presets qwen3-1.7b --batches 64 --steps 512 --only Attention
wait "$vpid"; echo "variants: exit $?"; grep -E "failed|variant" "$OUT/build-variants.log" | head -3
batch1 A1-nostream /tmp/nvnostream-install/runtimes/linux-x64/native/libslothsharp.so
decode_run A64-c512 /tmp/nvc512-install/runtimes/linux-x64/native/libslothsharp.so --dequantized --presets qwen3-1.7b \
    --batches 64 --steps 512 --only Attention
