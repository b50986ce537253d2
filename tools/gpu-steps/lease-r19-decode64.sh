#!/usr/bin/env bash
# Prepared in round 18 for the next session (issue 25: Qwen3-1.7B at batch 64 and 512 new tokens, 17,674 tokens/s in
# round 18 against 20,000; 20,683 at 256 tokens in round 17). Where the 512-token step's 3.62 ms go: each kernel class
# alone (--only each: the step with nothing but that class), dense copies, then the same at 256 tokens for the
# difference the longer cache makes, class by class.
set -uo pipefail
OUT="${1:?usage: lease-r19-decode64.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
for steps in 512 256; do
    echo "== Qwen3-1.7B, batch 64, $steps new tokens, each class alone"
    timeout 240 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --only each --dequantized \
        --results "$OUT/only64-$steps" --presets qwen3-1.7b --batches 64 --steps "$steps" > "$OUT/only64-$steps.log" 2>&1
    echo "exit $?"; grep -E "batch" "$OUT/only64-$steps.log" | grep -v "memory held"; snap
done
