#!/usr/bin/env bash
# Round 26, call 4 (the session's last device seconds), main: where batch 1's step goes with the tensor-core attention
# (each class alone, `--only each`, both presets), and a second process's Llama-3.2-1B batch-1 row, whose digest must
# equal the first's now that the prompts are drawn on the CPU.
set -uo pipefail
OUT="${1:?usage: lease-r26-4.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
decode_run b1-each "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512 --only each
decode_run b1-again "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b --batches 1 --steps 512
