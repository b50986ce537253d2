#!/usr/bin/env bash
# Issue 13's PEFT cross-check, measured against a float32 truth: a 1B-shaped bnb-4bit checkpoint (random weights),
# 200 fine-tuning steps, then SlothSharp (bf16 and fp32 compute) vs transformers + PEFT (bf16 and fp32) on the same
# dequantized weights: logits (tools/hf/parity.py), corpus eval loss, and `sloth merge` vs PEFT's merge_and_unload
# (tools/peft/compare_with_peft.py). Run on the GPU machine through gpu-run's extra-step hook:
#   SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_BENCH=0 SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/peft-parity.sh \
#     ./build.sh gpu-run $OUT
# Results: $OUT/peft-parity/ (report.md, the logs, losses).
set -uo pipefail
OUT="${1:?usage: peft-parity.sh OUTDIR}"
W=/tmp/sloth-parity; R="$OUT/peft-parity"
rm -rf "$W"; mkdir -p "$W/sloth" "$R"
S=(dotnet "$SLOTHSHARP_APPS/sloth/sloth.dll")
TOK=tests/data/hf-tiny-llama/dense
DATA=src/Cli/Assets/alice-chapter1.txt
LOG="$R/parity.log"
step() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
run() { local t0=$SECONDS; "$@" >>"$LOG" 2>&1; local rc=$?; echo "   (exit $rc, $((SECONDS - t0)) s)" | tee -a "$LOG"; return $rc; }

step "checkpoint (1B shape, bnb-4bit, seed 1) and 200 fine-tuning steps"
run "${S[@]}" make-checkpoint --preset llama-3.2-1b --bnb-4bit --seed 1 --tokenizer "$TOK" --out "$W/bnb"
run "${S[@]}" finetune --model "$W/bnb" --data "$DATA" --steps 200 --batch 8 --seq 512 --packing --lr 2e-4 --warmup 10 \
    --device cuda --seed 7 --out "$W/ft"
cp "$W/ft/losses.csv" "$R/" 2>/dev/null

step "SlothSharp eval, logits dumps: base/lora x bf16/fp32"
echo "{" > "$W/sloth/losses.json"
sep=""
for kind in base lora; do
    for dt in bf16 fp32; do
        extra=(); [ "$kind" = lora ] && extra=(--adapter "$W/ft")
        "${S[@]}" eval --model "$W/bnb" "${extra[@]}" --data "$DATA" --device cuda --dtype "$dt" \
            --save-logits "$W/sloth/logits-$kind-$dt.safetensors" > "$W/eval-$kind-$dt.out" 2>>"$LOG"
        echo "   eval $kind $dt: exit $? $(tail -1 "$W/eval-$kind-$dt.out")" | tee -a "$LOG"
        loss=$(tail -1 "$W/eval-$kind-$dt.out" | sed -n 's/^loss=\([^ ]*\) .*/\1/p')
        echo "$sep \"$kind-$dt\": ${loss:-null}" >> "$W/sloth/losses.json"; sep=","
    done
done
echo "}" >> "$W/sloth/losses.json"
cp "$W/sloth/losses.json" "$R/sloth-losses.json"

step "dense copy of the same weights (sloth dequant), transformers + PEFT"
mkdir -p "$W/deq"
run "${S[@]}" dequant "$W/bnb" "$W/deq/model.safetensors" --dtype bf16 --device cuda
python3 - "$W/bnb" "$W/deq" <<'PY'
import json, shutil, sys, os
src, dst = sys.argv[1:]
cfg = json.load(open(os.path.join(src, "config.json"))); cfg.pop("quantization_config", None); cfg["dtype"] = "bfloat16"
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    if os.path.exists(os.path.join(src, f)): shutil.copy(os.path.join(src, f), dst)
PY
python3 tools/hf/parity.py --base "$W/deq" --adapter "$W/ft" --data "$DATA" --sloth "$W/sloth" > "$R/report.md" 2>>"$LOG"
echo "   parity.py exit $?" | tee -a "$LOG"

step "sloth merge (bf16, fp32) vs PEFT"
for dt in bf16 fp32; do
    run "${S[@]}" merge --model "$W/bnb" --adapter "$W/ft" --out "$W/merged-$dt" --dtype "$dt"
    pdt=bfloat16; [ "$dt" = fp32 ] && pdt=float32
    python3 tools/peft/compare_with_peft.py --base "$W/deq" --adapter "$W/ft" --merged "$W/merged-$dt" --dtype $pdt 2>>"$LOG" | tee -a "$R/merge-check.txt"
    echo "   compare_with_peft $dt exit ${PIPESTATUS[0]}" | tee -a "$LOG"
done
step "done"
