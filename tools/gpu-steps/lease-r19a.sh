#!/usr/bin/env bash
# Round 19, call 1 (issue 25). Qwen3-1.7B at batch 64 and 512 new tokens (17,674 tokens/s in round 18 against 20,000):
# - the step's cuBLASLt GEMMs with the heuristic's first choice (as main ran them) against GEMMs tuned at the first
#   step (DecodeEngineOptions.GemmTuning, new), each in its own process (the tuner's choices are the process's);
# - the attention's key chunk past batch 4 (kDecodeMinChunk, 128 on main) at 256 and 512: two native variants built in
#   the background while the first runs go;
# - each kernel class alone with the tuned GEMMs; the decoding engine's GPU tests (the tuning runs in every batch > 8
#   test).
set -uo pipefail
OUT="${1:?usage: lease-r19a.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
# Variants: c256 / c512 = the chunk; c256d5 = chunk 256 with the sub-warp walk's loads 5 keys ahead instead of 3.
variant() {  # NAME CHUNK DEPTH
    native_variant "$1" src/decode_kernels.h "constexpr int64_t kDecodeMinChunk = 128;" "constexpr int64_t kDecodeMinChunk = $2;" \
        cuda/decode_attention_kernels.cuh "constexpr int kDepth = 3;" "constexpr int kDepth = $3;"
}
variant c256 256 3; variant c512 512 3; variant c256d5 256 5
( for v in c256 c512 c256d5; do build_native_variant "/tmp/nv$v" "/tmp/nv$v-install" || echo "variant $v failed"; done ) > "$OUT/build-variants.log" 2>&1 &
vpid=$!
for t in None Heuristic; do
    decode_run "tune-$t" "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b --batches 64 --steps 512 --gemm-tuning "$t" \
        --only Attention
    sed -n '/GEMM tuning/,$p' "$OUT/tune-$t.log" | grep -E "m=64" | cut -c1-240
done
gpu_tests decode-engine 240 "FullyQualifiedName~DecodeEngineGpuTests|FullyQualifiedName~DecodeLaunchModeGpu"
wait "$vpid"; echo "variant builds: exit $?"; grep -E "failed|Installing.*libslothsharp" "$OUT/build-variants.log" | tail -4
for v in c256 c512 c256d5; do
    decode_run "attn-$v" "/tmp/nv$v-install/runtimes/linux-x64/native/libslothsharp.so" --dequantized --presets qwen3-1.7b \
        --batches 64 --steps 512 --only Attention
done
echo "== Qwen3-1.7B, batch 64, 512 new tokens, each class alone (tuned GEMMs)"
timeout 200 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --only each --dequantized \
    --results "$OUT/only64-512" --presets qwen3-1.7b --batches 64 --steps 512 > "$OUT/only64-512.log" 2>&1
echo "exit $?"; grep -E "batch" "$OUT/only64-512.log" | grep -v "memory held"; snap
