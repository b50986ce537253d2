#!/usr/bin/env bash
# Issue 24: `sloth export` speed on this machine's CPU cores (no GPU involved). Writes a Llama-3.2-1B-shaped checkpoint
# with random weights (sloth make-checkpoint), exports it to q4_k_m and to q8_0, and reports the wall time of each
# export and the exporter's per-type conversion speed (its "conversion:" line, MB of float32 input per second).
# Run on the GPU machine through gpu-run's extra-step hook (SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/export-speed.sh) or
# by hand with SLOTHSHARP_APPS pointing at the published apps. Writes $OUT/export-speed.txt.
set -uo pipefail
OUT="${1:?usage: export-speed.sh OUTDIR}"
W="${EXPORT_SPEED_DIR:-/tmp/sloth-export-speed}"
S=(dotnet "$SLOTHSHARP_APPS/sloth/sloth.dll")
TOK=tests/data/hf-tiny-llama/dense           # a byte-level BPE tokenizer.json (ids < 420 of the 128256 vocabulary)
rm -rf "$W"; mkdir -p "$W"
{
  echo "== $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  t0=$SECONDS
  "${S[@]}" make-checkpoint --preset llama-3.2-1b --seed 1 --tokenizer "$TOK" --out "$W/dense" 2>&1
  echo "   make-checkpoint: $((SECONDS - t0)) s"
  for type in q4_k_m q8_0; do
    echo "== sloth export --type $type"
    t0=$(date +%s%N)
    "${S[@]}" export --model "$W/dense" --out "$W/model-$type.gguf" --type "$type" 2>&1 | grep -v '^\[' 
    rc=${PIPESTATUS[0]}
    echo "   exit $rc, wall $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    rm -f "$W/model-$type.gguf"
  done
} > "$OUT/export-speed.txt" 2>&1
rm -rf "$W"
cat "$OUT/export-speed.txt"
