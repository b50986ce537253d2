#!/usr/bin/env bash
# Round 20, call 2 (issue 22): Gemma-2-2B's QLoRA step (default path) and transformers + PEFT + bitsandbytes on the
# same shape in the same lease (the anchor so far, 14,972 tokens/s, was round 10's lease), then the one-pass
# soft-capped attention's row if time is left. It replaces round 19's lease-r19b.sh (never run), its rows reordered for
# a short device budget. Carry .bnb (bitsandbytes' source, built here while the first row runs).
set -uo pipefail
OUT="${1:?usage: lease-r20c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
start_bnb_build
dotnet "$sloth" make-checkpoint --preset gemma-2-2b --seed 1 --out /tmp/anchor-gemma > "$OUT/make-checkpoint.log" 2>&1 || echo "make-checkpoint failed"
echo "== Gemma-2-2B step row (default path)"
step_row gemma-2-2b fused
use_bnb
echo "== transformers + PEFT + bitsandbytes, gemma-2-2b"
PYTHONUNBUFFERED=1 timeout 180 python3 tools/bench/hf_step_anchor.py /tmp/anchor-gemma >> "$OUT/anchors.log" 2>&1; echo "anchor exit $?"
grep HFSTEP "$OUT/anchors.log" | tail -1; snap
echo "== Gemma-2-2B step rows after the anchor"
step_row gemma-2-2b fused
step_row gemma-2-2b fused-softcap-flash
