#!/usr/bin/env bash
# Issue 22: SlothSharp's QLoRA step and transformers + PEFT + bitsandbytes on the same published shapes in ONE lease.
# bitsandbytes is not installed on the GPU machine and its wheel is too big to travel: its source travels instead
# (here: `./build.sh` is not involved; make .bnb/bitsandbytes-src.tar.gz once with
#   mkdir -p .bnb && git -C <bitsandbytes git dir> archive --format=tar.gz -o "$PWD/.bnb/bitsandbytes-src.tar.gz" HEAD
# — .bnb is ignored through .git/info/exclude — and name .bnb in the call's carry) and is built there for sm_90 while
# SlothSharp's rows run. Shapes: ANCHOR_SHAPES (default: the four that fit one call; run the rest in a second call).
# ROW_SHAPES (default: the anchor shapes) chooses SlothSharp's rows, which may include shapes without an anchor.
# Writes $OUT/anchors.log (HFSTEP lines), $OUT/rows.log (STEPROW lines), $OUT/bnb-build.log.
set -uo pipefail
OUT="${1:?usage: families-anchors.sh OUTDIR}"
bench="$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
shapes="${ANCHOR_SHAPES:-qwen2.5-1.5b qwen3-1.7b gemma-3-1b phi-4-mini}"
B=/tmp/bnb
rm -rf "$B"; mkdir -p "$B/src" "$B/site"
tar xzf .bnb/bitsandbytes-src.tar.gz -C "$B/src" || { echo "no .bnb/bitsandbytes-src.tar.gz (see the header)"; exit 2; }
( cd "$B/src" && cmake -S . -B build -DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=90 -G Ninja \
      && cmake --build build -j 12 ) > "$OUT/bnb-build.log" 2>&1 &
bnb_pid=$!
ckpt_of() { case "$1" in mistral-7b|llama-3.1-8b) echo 1 ;; *) echo 0 ;; esac; }
echo "== SlothSharp rows"
for s in ${ROW_SHAPES:-$shapes}; do
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 120 dotnet "$bench" --results "$OUT" --suite step-row --shape "$s" \
        --path fused --checkpointing "$(ckpt_of "$s")" >> "$OUT/rows.log" 2>&1; echo "$s exit $?"
done
grep -oE '"Shape":"[^"]+"|"TokensPerSecond":[0-9.]+|"PeakGb":[0-9.]+' "$OUT/rows.log" | paste - - -
echo "== bitsandbytes build"
wait "$bnb_pid"; echo "exit $?"; tail -2 "$OUT/bnb-build.log"
ver="$(sed -nE 's/^__version__ = "([^"]+)".*/\1/p' "$B/src/bitsandbytes/__init__.py")"
mkdir -p "$B/site/bitsandbytes-$ver.dist-info"
printf 'Metadata-Version: 2.1\nName: bitsandbytes\nVersion: %s\n' "$ver" > "$B/site/bitsandbytes-$ver.dist-info/METADATA"
export PYTHONPATH="$B/src:$B/site${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import bitsandbytes, importlib.metadata as m; print('bitsandbytes', m.version('bitsandbytes'))"
echo "== transformers + PEFT + bitsandbytes"
for s in $shapes; do
    dotnet "$sloth" make-checkpoint --preset "$s" --seed 1 --out "/tmp/anchor-$s" > /dev/null 2>&1 || echo "make-checkpoint $s failed"
    flag=""; [ "$(ckpt_of "$s")" = 1 ] && flag="--checkpointing"
    PYTHONUNBUFFERED=1 timeout 150 python3 tools/bench/hf_step_anchor.py "/tmp/anchor-$s" $flag >> "$OUT/anchors.log" 2>&1; echo "$s exit $?"
    rm -rf "/tmp/anchor-$s"
done
grep HFSTEP "$OUT/anchors.log"; grep -iE "Error" "$OUT/anchors.log" | head -5
