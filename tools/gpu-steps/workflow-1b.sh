#!/usr/bin/env bash
# The product on the GPU (issues 12 and 13): a Llama-3.2-1B-shaped checkpoint with random weights in Hugging Face
# format, dense and bnb-4bit: load, evaluate, generate; fine-tune 200 steps; kill + --resume; the adapter in PEFT.
# Run on the GPU machine through gpu-run's extra-step hook:
#   SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_BENCH=0 SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/workflow-1b.sh \
#     ./build.sh gpu-run $OUT
# Everything it writes lands in $OUT/workflow.tar.gz (+ workflow.log), small enough to come back.
set -uo pipefail
OUT="${1:?usage: workflow-1b.sh OUTDIR}"
W=/tmp/sloth-workflow; R="$W/results"
rm -rf "$W"; mkdir -p "$R"
S=(dotnet "$SLOTHSHARP_APPS/sloth/sloth.dll")
TOK=tests/data/hf-tiny-llama/dense           # a byte-level BPE tokenizer.json (ids < 420 of the 128256 vocabulary)
DATA=src/Cli/Assets/alice-chapter1.txt       # public domain (see its -SOURCE.txt)
LOG="$OUT/workflow.log"
step() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
run() { local t0=$SECONDS; "$@" >>"$LOG" 2>&1; local rc=$?; echo "   (exit $rc, $((SECONDS - t0)) s)" | tee -a "$LOG"; return $rc; }
fin() { tar -C "$W" -czf "$OUT/workflow.tar.gz" results; }
trap fin EXIT

step "write checkpoints (random N(0, 0.02) weights, seed 1)"
run "${S[@]}" make-checkpoint --preset llama-3.2-1b --bnb-4bit --seed 1 --tokenizer "$TOK" --out "$W/bnb"
[ -n "${WORKFLOW_RESUME_ONLY:-}" ] || run "${S[@]}" make-checkpoint --preset llama-3.2-1b --seed 1 --tokenizer "$TOK" --out "$W/dense"
du -sh "$W"/* | tee -a "$LOG"

# WORKFLOW_RESUME_ONLY=1: only the checkpoint and the two fine-tuning runs (a re-check after a fix).
ONLY_RESUME="${WORKFLOW_RESUME_ONLY:-}"
[ -n "$ONLY_RESUME" ] || for m in bnb dense; do
    step "eval $m (dense: quantized to NF4 on load, on the GPU)"
    run "${S[@]}" eval --model "$W/$m" --data "$DATA" --device cuda
    step "generate $m (greedy, batch 1)"
    run "${S[@]}" generate --model "$W/$m" --prompt "Alice was" --max-new-tokens 128 --device cuda
done

FT=(finetune --model "$W/bnb" --data "$DATA" --steps 200 --batch 8 --seq 512 --packing --lr 2e-4 --warmup 10
    --save-every 50 --device cuda --seed 7)
step "fine-tune 200 steps, uninterrupted"
run "${S[@]}" "${FT[@]}" --out "$W/ft-a"
cp "$W/ft-a/losses.csv" "$R/losses-uninterrupted.csv"; cp "$W/ft-a/loss.png" "$W/ft-a/summary.md" "$R/" 2>/dev/null

step "fine-tune again, SIGTERM once step 100's checkpoint exists, then --resume"
"${S[@]}" "${FT[@]}" --out "$W/ft-b" >>"$LOG" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -d "$W/ft-b/checkpoints/step-000100" ] && break; sleep 0.5; done
kill -TERM "$pid"; wait "$pid"; echo "   killed run exit code $? (130 = interrupted and saved)" | tee -a "$LOG"
ls "$W/ft-b/checkpoints" | tee -a "$LOG"
run "${S[@]}" "${FT[@]}" --out "$W/ft-b" --resume "$W/ft-b/checkpoints"
cp "$W/ft-b/losses.csv" "$R/losses-resumed.csv"
python3 - "$R/losses-uninterrupted.csv" "$R/losses-resumed.csv" <<'PY' | tee -a "$LOG" "$R/resume-check.txt"
import csv, sys
a = {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(sys.argv[1]))}
b = {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(sys.argv[2]))}
common = sorted(set(a) & set(b))
diff = max(abs(a[s] - b[s]) for s in common)
print(f"steps compared: {len(common)} (1..{common[-1]}); max |loss difference| uninterrupted vs killed+resumed: {diff:.3g}")
print(f"loss: step 1 {a[min(a)]:.4f} -> step {max(a)} {a[max(a)]:.4f}")
PY

[ -n "$ONLY_RESUME" ] && exit 0
step "eval with the adapter (SlothSharp, NF4 base + LoRA)"
run "${S[@]}" eval --model "$W/bnb" --adapter "$W/ft-a" --data "$DATA" --device cuda
run "${S[@]}" generate --model "$W/bnb" --adapter "$W/ft-a" --prompt "Alice was" --max-new-tokens 32 --device cuda

step "PEFT and merge cross-checks against a float32 truth (tools/gpu-steps/peft-parity.sh)"
PARITY_MODEL="$W/bnb" PARITY_ADAPTER="$W/ft-a" bash tools/gpu-steps/peft-parity.sh "$OUT"
cp -r "$OUT/peft-parity" "$R/"

step "tokenizer: Hugging Face tokenizers' ids for the mixed text"
python3 tools/hf/tokenize_check.py tests/data/hf-tiny-llama/tokenizer-mixed.txt \
    hf-tiny-llama=tests/data/hf-tiny-llama/nf4/tokenizer.json \
    llama3-style=tests/data/llama3-style-tokenizer/tokenizer.json > "$R/tokenizer-mixed-expected.json" 2>>"$LOG"
echo "   (exit $?)" | tee -a "$LOG"
cp "$LOG" "$R/"
step "done"
