#!/usr/bin/env bash
# Round 21, call 4 (issue 22), chained on a warm machine: Gemma-2-2B's QLoRA step (default path) and transformers +
# PEFT + bitsandbytes on the same shape in the same lease (round 20's lease-r20c.sh, never run there, without its
# second rows). Carry .bnb.
set -uo pipefail
OUT="${1:?usage: lease-r21d.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
start_bnb_build
dotnet "$sloth" make-checkpoint --preset gemma-2-2b --seed 1 --out /tmp/anchor-gemma > "$OUT/make-checkpoint.log" 2>&1 || echo "make-checkpoint failed"
echo "== Gemma-2-2B step row (default path)"
step_row gemma-2-2b fused
use_bnb
echo "== transformers + PEFT + bitsandbytes, gemma-2-2b"
PYTHONUNBUFFERED=1 timeout 170 python3 tools/bench/hf_step_anchor.py /tmp/anchor-gemma >> "$OUT/anchors.log" 2>&1; echo "anchor exit $?"
grep HFSTEP "$OUT/anchors.log" | tail -1; snap
