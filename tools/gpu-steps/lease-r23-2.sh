#!/usr/bin/env bash
# Round 23, call 2 (issue 22), chained on call 1's machine: transformers + PEFT + bitsandbytes on Gemma-2-2B's shape and
# SlothSharp's step row again, in the same lease (bitsandbytes built by call 1 when /tmp kept it, else here). Carry .bnb.
set -uo pipefail
OUT="${1:?usage: lease-r23-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
if ls /tmp/bnb/src/bitsandbytes/libbitsandbytes_cuda*.so > /dev/null 2>&1; then bnb_pid=""; echo "bitsandbytes: call 1's build"
else start_bnb_build; fi
dotnet "$sloth" make-checkpoint --preset gemma-2-2b --seed 1 --out /tmp/anchor-gemma > "$OUT/make-checkpoint.log" 2>&1 || echo "make-checkpoint failed"
echo "== Gemma-2-2B step row (default path)"
step_row gemma-2-2b fused
use_bnb   # waits for the build started here, if any ("exit 127" when call 1 built it)
echo "== transformers + PEFT + bitsandbytes, gemma-2-2b"
PYTHONUNBUFFERED=1 timeout 200 python3 tools/bench/hf_step_anchor.py /tmp/anchor-gemma >> "$OUT/anchors.log" 2>&1; echo "anchor exit $?"
grep HFSTEP "$OUT/anchors.log" | tail -1; snap
