#!/usr/bin/env bash
# Round 17, call 5 (main after h-attn-vec; the bundle of call 4, whose product code is main's): issue 25's batch-64 rows
# at 512 new tokens (the batch-1 length; call 4 ran 256), Qwen3-1.7B and Llama-3.2-1B from dense copies, then NF4.
set -uo pipefail
OUT="${1:?usage: lease-r17d.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
decode_run decode64-512 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512 --dequantized
decode_run decode64-512-nf4 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
