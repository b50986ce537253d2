#!/usr/bin/env bash
# Round 19, call 2 (issue 22): Gemma-2-2B's QLoRA step both ways next to transformers + PEFT + bitsandbytes in the same
# lease (the anchor so far, 14,972 tokens/s, was round 10's lease). bitsandbytes' source travels as .bnb (see
# families-anchors.sh) and builds while SlothSharp's rows run.
set -uo pipefail
OUT="${1:?usage: lease-r19b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
B=/tmp/bnb
rm -rf "$B"; mkdir -p "$B/src" "$B/site"
tar xzf .bnb/bitsandbytes-src.tar.gz -C "$B/src" || echo "no .bnb/bitsandbytes-src.tar.gz"
( cd "$B/src" && cmake -S . -B build -DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=90 -G Ninja \
      && cmake --build build -j 8 ) > "$OUT/bnb-build.log" 2>&1 &
bnb_pid=$!
dotnet "$sloth" make-checkpoint --preset gemma-2-2b --seed 1 --out /tmp/anchor-gemma > "$OUT/make-checkpoint.log" 2>&1 || echo "make-checkpoint failed"
echo "== Gemma-2-2B step rows"
step_row gemma-2-2b fused
step_row gemma-2-2b fused-softcap-flash
echo "== bitsandbytes build"
wait "$bnb_pid"; echo "exit $?"; tail -2 "$OUT/bnb-build.log"
ver="$(sed -nE 's/^__version__ = "([^"]+)".*/\1/p' "$B/src/bitsandbytes/__init__.py")"
mkdir -p "$B/site/bitsandbytes-$ver.dist-info"
printf 'Metadata-Version: 2.1\nName: bitsandbytes\nVersion: %s\n' "$ver" > "$B/site/bitsandbytes-$ver.dist-info/METADATA"
export PYTHONPATH="$B/src:$B/site${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import bitsandbytes, importlib.metadata as m; print('bitsandbytes', m.version('bitsandbytes'))"
echo "== transformers + PEFT + bitsandbytes, gemma-2-2b"
PYTHONUNBUFFERED=1 timeout 180 python3 tools/bench/hf_step_anchor.py /tmp/anchor-gemma >> "$OUT/anchors.log" 2>&1; echo "anchor exit $?"
grep HFSTEP "$OUT/anchors.log" | tail -1; snap
echo "== Gemma-2-2B step row again (after the anchor)"
step_row gemma-2-2b fused-softcap-flash
