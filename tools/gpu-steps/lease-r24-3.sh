#!/usr/bin/env bash
# Round 24, call 3 (issue 25): the decode attention's online softmax skips its rescale (an expf and 2 + head_dim /
# lanes multiplications a key and head) when a key leaves the running max as it was, which should give the same bits;
# and a third split policy, 512 keys a block from batch 32 (round 19's variant: attention 1.384 -> 1.252 ms at batch
# 64). Libraries: A = this tree; B = main's native tree (gpu-b-native/); C = A with the large-batch chunk set back to
# 128 (the skip alone: its digests must equal B's at both batches); A's digest at batch 1 must equal B's too.
# Batch 1 (NF4 GEMVs) and batch 64 (dense copies), 512 new tokens, both presets; then the attention and decode GPU tests.
set -uo pipefail
OUT="${1:?usage: lease-r24-3.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
start_main_build
native_variant c128 src/decode_kernels.h "constexpr int64_t kDecodeLargeMinChunk = 512;" "constexpr int64_t kDecodeLargeMinChunk = 128;"
( build_native_variant /tmp/nvc128 /tmp/nvc128-install > "$OUT/build-c128.log" 2>&1; echo "build c128: exit $?" ) &
cpid=$!
gpu_tests attn-tests 200 "FullyQualifiedName~DecodeAttentionGpuTests|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeLaunchMode"
wait "$bpid"; echo "build B: exit $?"; wait "$cpid"
libC=/tmp/nvc128-install/runtimes/linux-x64/native/libslothsharp.so
for v in A B C; do
    lib="$SLOTHSHARP_NATIVE_PATH"; [ "$v" = B ] && lib="$libB"; [ "$v" = C ] && lib="$libC"
    decode_run "b1-$v" "$lib" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512
    decode_run "b64-$v" "$lib" --dequantized --presets llama-3.2-1b,qwen3-1.7b --batches 64 --steps 512
done
grep -h "digest" "$OUT"/b1-?.log "$OUT"/b64-?.log | sed -E 's/.*(batch [0-9]+).*tokens\/s \(.*digest (.*)/\1 \2/' | head -20
