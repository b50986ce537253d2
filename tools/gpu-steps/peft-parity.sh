#!/usr/bin/env bash
# Issue 13's PEFT cross-check, measured against a float32 truth: SlothSharp (bf16 and fp32 compute) vs transformers +
# PEFT (bf16 and fp32) on the same dequantized weights: logits (tools/hf/parity.py), corpus eval loss, and `sloth merge`
# vs PEFT's merge_and_unload (tools/peft/compare_with_peft.py). By default it makes its own 1B-shaped bnb-4bit
# checkpoint (random weights) and trains an adapter for 200 steps; PARITY_MODEL=DIR PARITY_ADAPTER=DIR reuse existing
# ones (workflow-1b.sh does). Run on the GPU machine through gpu-run's extra-step hook:
#   SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_BENCH=0 SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/peft-parity.sh \
#     ./build.sh gpu-run $OUT
# Results: $OUT/peft-parity/ (report.md, merge-check.txt, parity.log, losses).
set -uo pipefail
OUT="${1:?usage: peft-parity.sh OUTDIR}"
W=/tmp/sloth-parity; R="$OUT/peft-parity"
rm -rf "$W"; mkdir -p "$W/sloth" "$R"
S=(dotnet "$SLOTHSHARP_APPS/sloth/sloth.dll")
DATA=src/Cli/Assets/alice-chapter1.txt
LOG="$R/parity.log"
step() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
run() { local t0=$SECONDS; "$@" >>"$LOG" 2>&1; local rc=$?; echo "   (exit $rc, $((SECONDS - t0)) s)" | tee -a "$LOG"; return $rc; }

MODEL="${PARITY_MODEL:-$W/bnb}"; ADAPTER="${PARITY_ADAPTER:-$W/ft}"
if [ -z "${PARITY_MODEL:-}" ]; then
    step "checkpoint (1B shape, bnb-4bit, seed 1) and 200 fine-tuning steps"
    run "${S[@]}" make-checkpoint --preset llama-3.2-1b --bnb-4bit --seed 1 --tokenizer tests/data/hf-tiny-llama/dense --out "$MODEL"
    run "${S[@]}" finetune --model "$MODEL" --data "$DATA" --steps 200 --batch 8 --seq 512 --packing --lr 2e-4 --warmup 10 \
        --device cuda --seed 7 --out "$ADAPTER"
    cp "$ADAPTER/losses.csv" "$R/" 2>/dev/null
fi

step "SlothSharp eval and logits dumps: base/lora x bf16/fp32"
echo "{" > "$W/sloth/losses.json"
sep=""
for kind in base lora; do
    for dt in bf16 fp32; do
        extra=(); [ "$kind" = lora ] && extra=(--adapter "$ADAPTER")
        "${S[@]}" eval --model "$MODEL" "${extra[@]}" --data "$DATA" --device cuda --dtype "$dt" \
            --save-logits "$W/sloth/logits-$kind-$dt.safetensors" > "$W/eval-$kind-$dt.out" 2>>"$LOG"
        echo "   eval $kind $dt: exit $? $(tail -1 "$W/eval-$kind-$dt.out")" | tee -a "$LOG"
        loss=$(tail -1 "$W/eval-$kind-$dt.out" | sed -n 's/^loss=\([^ ]*\) .*/\1/p')
        echo "$sep \"$kind-$dt\": ${loss:-null}" >> "$W/sloth/losses.json"; sep=","
    done
done
echo "}" >> "$W/sloth/losses.json"
cp "$W/sloth/losses.json" "$R/sloth-losses.json"

step "dense copies of the same weights (sloth dequant: bf16, and float32 = the exact dequantized values)"
for dt in bf16 fp32; do
    mkdir -p "$W/deq-$dt"
    run "${S[@]}" dequant "$MODEL" "$W/deq-$dt/model.safetensors" --dtype "$dt" --device cuda
    python3 - "$MODEL" "$W/deq-$dt" "$dt" <<'PY'
import json, shutil, sys, os
src, dst, dt = sys.argv[1:]
cfg = json.load(open(os.path.join(src, "config.json"))); cfg.pop("quantization_config", None)
cfg["dtype"] = "bfloat16" if dt == "bf16" else "float32"
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
    if os.path.exists(os.path.join(src, f)): shutil.copy(os.path.join(src, f), dst)
PY
done
step "transformers + PEFT vs SlothSharp (tools/hf/parity.py)"
python3 tools/hf/parity.py --base "$W/deq-bf16" --base-fp32 "$W/deq-fp32" --adapter "$ADAPTER" --data "$DATA" --sloth "$W/sloth" \
    > "$R/report.md" 2>>"$LOG"
echo "   parity.py exit $?" | tee -a "$LOG"
grep -v '^{' "$R/report.md" | tee -a "$LOG" >/dev/null

step "sloth merge (bf16, fp32) vs PEFT"
for dt in bf16 fp32; do
    run "${S[@]}" merge --model "$MODEL" --adapter "$ADAPTER" --out "$W/merged-$dt" --dtype "$dt"
    pdt=bfloat16; [ "$dt" = fp32 ] && pdt=float32
    python3 tools/peft/compare_with_peft.py --base "$W/deq-bf16" --base-fp32 "$W/deq-fp32" --adapter "$ADAPTER" \
        --merged "$W/merged-$dt" --dtype $pdt 2>>"$LOG" | tee -a "$R/merge-check.txt"
    echo "   compare_with_peft $dt exit ${PIPESTATUS[0]}" | tee -a "$LOG"
done
rm -rf "$W/deq-fp32" "$W/merged-fp32"
step "done"
