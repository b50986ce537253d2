#!/usr/bin/env bash
# Round 23, call 3 (issue 25): SlothSharp's decode rows (batch 1 and 64, 512 new tokens; batch 64 from dense copies) and
# transformers' anchors on Llama-3.2-1B's random weights in the same lease: eager (batch 64 and 1, 128 new tokens) and
# static cache + torch.compile at batch 1 with 512 new tokens, now warmed up on the timed run's shapes (round 22's
# compiled inside the timed generation). ANCHOR_PRESETS picks the anchors' shapes (default llama-3.2-1b); OURS=0 skips
# our rows.
set -uo pipefail
OUT="${1:?usage: lease-r23-3.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
if [ "${OURS:-1}" = 1 ]; then
    decode_run ours-b1 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1
    decode_run ours-b64 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 64 --dequantized
fi
for preset in ${ANCHOR_PRESETS:-llama-3.2-1b}; do
    dotnet "$sloth" make-checkpoint --preset "$preset" --seed 1 --out "/tmp/anchor-$preset" > /dev/null 2>&1 || echo "make-checkpoint $preset failed"
    PYTHONUNBUFFERED=1 timeout 90 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes eager --batches 64,1 --new 128 \
        >> "$OUT/hf-decode.log" 2>&1; echo "eager $preset exit $?"
    PYTHONUNBUFFERED=1 timeout 260 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes static --batches 1 --new 512 \
        --no-prefill >> "$OUT/hf-decode.log" 2>&1; echo "static $preset exit $?"
    rm -rf "/tmp/anchor-$preset"; snap
done
grep HFANCHOR "$OUT/hf-decode.log"; grep -iE "Error" "$OUT/hf-decode.log" | head -5
