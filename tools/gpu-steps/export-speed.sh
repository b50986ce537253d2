#!/usr/bin/env bash
# Issue 24: `sloth export` speed on the GPU machine. Writes Llama-3.2-1B-shaped checkpoints with random weights (sloth
# make-checkpoint: dense bf16, and the bitsandbytes NF4 layout), exports them to q4_k_m and q8_0 and reports the wall
# time of each export and the exporter's per-type conversion speed ("conversion:" line, MB of float32 input per
# second). The NF4 base is exported with --device cpu and --device cuda (NF4 dequantized on the GPU): where the GPU pays.
# Run through gpu-run's extra-step hook or by hand with SLOTHSHARP_APPS pointing at the published apps.
# EXPORT_PRESET (default llama-3.2-1b; e.g. llama-3.1-8b for the size where the GPU quantizer should pay) and
# EXPORT_NF4=0 (skip the NF4 base) choose the work. Writes $OUT/export-speed.txt.
set -uo pipefail
OUT="${1:?usage: export-speed.sh OUTDIR}"
W="${EXPORT_SPEED_DIR:-/tmp/sloth-export-speed}"
S=(dotnet "$SLOTHSHARP_APPS/sloth/sloth.dll")
TOK=tests/data/hf-tiny-llama/dense           # a byte-level BPE tokenizer.json (ids < 420 of the 128256 vocabulary)
rm -rf "$W"; mkdir -p "$W"
export_once() {  # model type device
    echo "== sloth export --model $(basename "$1") --type $2 --device $3"
    local t0; t0=$(date +%s%N)
    "${S[@]}" export --model "$1" --out "$W/model.gguf" --type "$2" --device "$3" 2>&1 | grep -v '^\['
    echo "   exit ${PIPESTATUS[0]}, wall $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    rm -f "$W/model.gguf"
}
{
  echo "== $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  t0=$SECONDS
  preset="${EXPORT_PRESET:-llama-3.2-1b}"
  "${S[@]}" make-checkpoint --preset "$preset" --seed 1 --tokenizer "$TOK" --out "$W/dense" 2>&1
  [ "${EXPORT_NF4:-1}" = 1 ] && "${S[@]}" make-checkpoint --preset "$preset" --seed 1 --tokenizer "$TOK" --bnb-4bit --out "$W/nf4" 2>&1
  echo "   make-checkpoint ($preset): $((SECONDS - t0)) s"
  for type in q4_k_m q8_0; do export_once "$W/dense" "$type" cpu; export_once "$W/dense" "$type" cuda; done
  [ "${EXPORT_NF4:-1}" = 1 ] && for device in cpu cuda; do export_once "$W/nf4" q4_k_m "$device"; done
} > "$OUT/export-speed.txt" 2>&1
rm -rf "$W"
cat "$OUT/export-speed.txt"
