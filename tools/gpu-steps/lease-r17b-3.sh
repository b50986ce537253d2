#!/usr/bin/env bash
# Round 17, call 3 (warm machine, the bundle of lease-r17b-1.sh): where Qwen3-1.7B's batch-64 step goes (each kernel
# class alone, dense copies), A (h-round17b) and B (main's native tree, still built from call 1).
set -uo pipefail
OUT="${1:?usage: lease-r17b-3.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
libB=/tmp/b-install/runtimes/linux-x64/native/libslothsharp.so
decode_run only64-A "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 64 --steps 128 --dequantized --only each
[ -f "$libB" ] && decode_run only64-B "$libB" --presets qwen3-1.7b --batches 64 --steps 128 --dequantized --only each
