#!/usr/bin/env bash
# Prepared in round 19, not run (no device time left). Issue 22: Gemma-2-2B's QLoRA step both ways next to
# transformers + PEFT + bitsandbytes in the same lease (the anchor so far, 14,972 tokens/s, was round 10's lease).
# bitsandbytes' source travels as .bnb (name it in the call's carry; see families-anchors.sh) and builds while
# SlothSharp's rows run.
set -uo pipefail
OUT="${1:?usage: lease-r19b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
start_bnb_build
dotnet "$sloth" make-checkpoint --preset gemma-2-2b --seed 1 --out /tmp/anchor-gemma > "$OUT/make-checkpoint.log" 2>&1 || echo "make-checkpoint failed"
echo "== Gemma-2-2B step rows"
step_row gemma-2-2b fused
step_row gemma-2-2b fused-softcap-flash
use_bnb
echo "== transformers + PEFT + bitsandbytes, gemma-2-2b"
PYTHONUNBUFFERED=1 timeout 180 python3 tools/bench/hf_step_anchor.py /tmp/anchor-gemma >> "$OUT/anchors.log" 2>&1; echo "anchor exit $?"
grep HFSTEP "$OUT/anchors.log" | tail -1; snap
echo "== Gemma-2-2B step row again (after the anchor)"
step_row gemma-2-2b fused-softcap-flash
