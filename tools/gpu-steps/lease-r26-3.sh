#!/usr/bin/env bash
# Round 26, call 3, branch r26: the large-batch chunk for the tensor-core walk. Qwen3-1.7B (and Llama-3.2-1B) at batch
# 64 on dense copies, 512 new tokens: this tree (512 keys a block from batch 32) against a native variant with 256 (the
# walk's keys cost less than the sub-warp walk's, so shorter chunks and more blocks may pay now), built while this
# tree's rows run.
set -uo pipefail
OUT="${1:?usage: lease-r26-3.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant l256 src/decode_kernels.h "constexpr int64_t kDecodeLargeMinChunk = 512;" "constexpr int64_t kDecodeLargeMinChunk = 256;"
( build_native_variant /tmp/nvl256 /tmp/nvl256-install > "$OUT/build-l256.log" 2>&1; echo "build l256: exit $?" ) &
vpid=$!
decode_run b64-l512 "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
wait "$vpid"
decode_run b64-l256 /tmp/nvl256-install/runtimes/linux-x64/native/libslothsharp.so --dequantized --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
decode_run b64-l512-again "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b --batches 64 --steps 512
