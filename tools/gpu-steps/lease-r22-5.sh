#!/usr/bin/env bash
# Round 22, call 5 (main, warm after call 4): issue 25's anchors in one lease with SlothSharp's rows: transformers bf16
# on the same random weights, eager (batch 1 and 64) and static cache + torch.compile (batch 1), 128 new tokens after a
# 32-token prompt; SlothSharp's decode rows (batch 1 and 64 at 512 new tokens; batch 64 from dense copies).
set -uo pipefail
OUT="${1:?usage: lease-r22-5.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
decode_run ours-b1 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1
decode_run ours-b64 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 64 --dequantized
for preset in llama-3.2-1b qwen3-1.7b; do
    dotnet "$sloth" make-checkpoint --preset "$preset" --seed 1 --out "/tmp/anchor-$preset" > /dev/null 2>&1 || echo "make-checkpoint $preset failed"
    PYTHONUNBUFFERED=1 timeout 70 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes eager --batches 64,1 --new 128 \
        >> "$OUT/hf-decode.log" 2>&1; echo "eager $preset exit $?"
    PYTHONUNBUFFERED=1 timeout 110 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes static --batches 1 --new 128 \
        >> "$OUT/hf-decode.log" 2>&1; echo "static $preset exit $?"
    rm -rf "/tmp/anchor-$preset"; snap
done
grep HFANCHOR "$OUT/hf-decode.log"; grep -iE "Error" "$OUT/hf-decode.log" | head -5
