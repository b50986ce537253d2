#!/usr/bin/env bash
# Issue 16 on ONE GPU: `sloth finetune --gpus 1` (a worker process over NCCL) against the plain single-process run.
#   SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_BENCH=0 SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/dist-1gpu.sh \
#     ./build.sh gpu-run $OUT
# Checks, in order (each prints one "CHECK ..." line; everything lands in $OUT/dist-1gpu.log + dist-1gpu.tar.gz):
#  0. the distributed GPU tests (results/dist-tests.log): NCCL one rank, incl. the side-stream prefetch test.
#  1. --gpus 2 on a one-GPU machine: exit 2 and "error: --gpus: 2 GPUs asked for, but this machine has 1 ...".
#  2. tiny checkpoint: plain vs --gpus 1 (base replicated: the same code path, losses must be EQUAL) vs
#     --gpus 1 --shard-base on (ShardedLlama with 1 rank: unfused NF4 path, losses equal within bf16 rounding).
#     Phase 2 (tiny): --shard-optimizer on (ShardedAdamW over NCCL, 1 rank) vs 2c (only the optimizer's rounding
#     differs); --prefetch (next layer all-gathered on the side CUDA stream, ordered by events) vs 2c: EQUAL;
#     --shard-optimizer on --offload-optimizer --prefetch vs the sharded optimizer (AdamW update on the CPU: equal
#     up to CPU/GPU float rounding); plain --offload-optimizer (no --gpus: a one-rank sharded optimizer) vs plain.
#  3. SIGTERM to the launcher once step 10's checkpoint exists: exit 130, a checkpoint, then --resume --gpus 1 gives
#     the uninterrupted losses; the same checkpoint (written by the unsharded AdamW) resumed with --shard-optimizer on
#     --offload-optimizer gives them too (the optimizer file is the same either way).
#  4. Llama-3.2-1B shape (random bnb-4bit), 12 steps: plain vs --gpus 1 --shard-base on, and vs the same with
#     --shard-optimizer on --prefetch; tokens/s and GPU memory as printed by the progress line (DIST_SKIP_1B=1
#     skips it).
# GPU time: about 1.5 minutes (process starts dominate).
set -uo pipefail
OUT="${1:?usage: dist-1gpu.sh OUTDIR}"
W=/tmp/sloth-dist1; R="$W/results"
rm -rf "$W"; mkdir -p "$R"
S=(dotnet "$SLOTHSHARP_APPS/sloth/sloth.dll")
TOK=tests/data/hf-tiny-llama/dense
DATA=src/Cli/Assets/alice-chapter1.txt
LOG="$OUT/dist-1gpu.log"
step() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
run() { local t0=$SECONDS; "$@" >>"$LOG" 2>&1; local rc=$?; echo "   (exit $rc, $((SECONDS - t0)) s)" | tee -a "$LOG"; return $rc; }
fin() { cp "$LOG" "$R/" 2>/dev/null; tar -C "$W" -czf "$OUT/dist-1gpu.tar.gz" results; }
trap fin EXIT
nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$LOG"

compare() {  # compare A.csv B.csv LABEL MAXDIFF: prints the max |loss difference| and PASS/FAIL against MAXDIFF
    python3 - "$@" <<'PY' | tee -a "$LOG" "$R/checks.txt"
import csv, sys
a = {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(sys.argv[1]))}
b = {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(sys.argv[2]))}
common = sorted(set(a) & set(b))
diff = max(abs(a[s] - b[s]) for s in common) if common else float("inf")
ok = len(common) == len(a) == len(b) and diff <= float(sys.argv[4])
print(f"CHECK {sys.argv[3]}: {len(common)} steps, max |loss difference| {diff:.3g} (allowed {sys.argv[4]}) -> {'PASS' if ok else 'FAIL'}")
print(f"      first/last loss: {a[common[0]]:.5f}/{a[common[-1]]:.5f} vs {b[common[0]]:.5f}/{b[common[-1]]:.5f}")
PY
}

step "0. GPU tests of the distributed code (NCCL one rank: collectives, sharded step, side-stream prefetch bit-identical)"
filter="FullyQualifiedName~NcclGpuTests|FullyQualifiedName~NcclTests|FullyQualifiedName~PrefetchTests|FullyQualifiedName~ShardedOptimizerTrainerTests"
timeout 300 dotnet "$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll" --no-progress --filter "$filter" > "$R/dist-tests.log" 2>&1
rc=$?
grep -E "^\s*(total|failed|succeeded|skipped):|^\s*Failed |prefetch stats" "$R/dist-tests.log" | tee -a "$LOG"
echo "CHECK dist GPU tests (NcclGpuTests incl. PrefetchOnTheSideStreamGivesTheSameLosses): exit $rc -> $([ $rc = 0 ] && echo PASS || echo FAIL)" | tee -a "$LOG" "$R/checks.txt"

step "tiny bnb-4bit checkpoint"
run "${S[@]}" make-checkpoint --preset tiny --bnb-4bit --seed 1 --tokenizer "$TOK" --out "$W/tiny"

step "1. --gpus 2 on a one-GPU machine (expect exit 2 and one error line)"
"${S[@]}" finetune --model "$W/tiny" --data "$DATA" --out "$W/never" --gpus 2 >"$W/gpus2.out" 2>"$W/gpus2.err"; rc=$?
cat "$W/gpus2.err" | tee -a "$LOG"
if [ $rc = 2 ] && grep -q '^error: --gpus: 2 GPUs asked for' "$W/gpus2.err" && [ ! -e "$W/never" ]; then r=PASS; else r=FAIL; fi
echo "CHECK --gpus 2 on 1 GPU: exit $rc -> $r" | tee -a "$LOG" "$R/checks.txt"

FT=(finetune --model "$W/tiny" --data "$DATA" --steps 30 --batch 4 --seq 128 --packing --lr 1e-3 --warmup 3 --save-every 10 --seed 7)
step "2a. plain single process"
run "${S[@]}" "${FT[@]}" --out "$W/plain"
step "2b. --gpus 1 (base replicated)"
run "${S[@]}" "${FT[@]}" --out "$W/g1" --gpus 1
step "2c. --gpus 1 --shard-base on"
run "${S[@]}" "${FT[@]}" --out "$W/g1s" --gpus 1 --shard-base on
for d in plain g1 g1s; do cp "$W/$d/losses.csv" "$R/losses-tiny-$d.csv" 2>/dev/null; done
compare "$W/plain/losses.csv" "$W/g1/losses.csv" "tiny plain vs --gpus 1" 0
compare "$W/plain/losses.csv" "$W/g1s/losses.csv" "tiny plain vs --gpus 1 --shard-base on" 0.02

step "2d. --gpus 1 --shard-base on --shard-optimizer on (ShardedAdamW over NCCL)"
run "${S[@]}" "${FT[@]}" --out "$W/g1so" --gpus 1 --shard-base on --shard-optimizer on
step "2e. --gpus 1 --shard-base on --prefetch (side-stream all-gather)"
run "${S[@]}" "${FT[@]}" --out "$W/g1sp" --gpus 1 --shard-base on --prefetch
step "2f. --gpus 1 --shard-base on --shard-optimizer on --offload-optimizer --prefetch"
run "${S[@]}" "${FT[@]}" --out "$W/g1sop" --gpus 1 --shard-base on --shard-optimizer on --offload-optimizer --prefetch
step "2g. plain --offload-optimizer (no --gpus)"
run "${S[@]}" "${FT[@]}" --out "$W/plain-off" --offload-optimizer
for d in g1so g1sp g1sop plain-off; do cp "$W/$d/losses.csv" "$R/losses-tiny-$d.csv" 2>/dev/null; done
grep -h "^- device" "$W/g1sop/summary.md" 2>/dev/null | sed 's/^/   2f /' | tee -a "$LOG" "$R/checks.txt"
compare "$W/g1s/losses.csv" "$W/g1so/losses.csv" "tiny --shard-base on: AdamW vs --shard-optimizer on" 0.02
compare "$W/g1s/losses.csv" "$W/g1sp/losses.csv" "tiny --shard-base on vs + --prefetch (NCCL side stream)" 0
compare "$W/g1so/losses.csv" "$W/g1sop/losses.csv" "tiny --shard-optimizer on vs + --offload-optimizer --prefetch" 0.02
compare "$W/plain/losses.csv" "$W/plain-off/losses.csv" "tiny plain vs plain --offload-optimizer" 0.02
ls "$W/g1" "$W/g1/checkpoints" | tee -a "$LOG"

step "3. --gpus 1: SIGTERM to the launcher once step 10's checkpoint exists, then --resume --gpus 1"
"${S[@]}" "${FT[@]}" --out "$W/g1k" --gpus 1 >>"$LOG" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -d "$W/g1k/checkpoints/step-000010" ] && break; sleep 0.2; done
kill -TERM "$pid"; wait "$pid"; rc=$?
echo "   killed run exit code $rc (130 = interrupted and saved)" | tee -a "$LOG"
cp -r "$W/g1k" "$W/g1k-so"  # the same checkpoint, resumed below with the sharded, offloaded optimizer
ls "$W/g1k/checkpoints" | tee -a "$LOG"
ls -a "$W/g1k/checkpoints" | grep -q tmp && echo "CHECK leftovers: temporary directories left -> FAIL" | tee -a "$LOG" "$R/checks.txt"
echo "CHECK SIGTERM forwarded: exit $rc -> $([ $rc = 130 ] && echo PASS || echo FAIL)" | tee -a "$LOG" "$R/checks.txt"
run "${S[@]}" "${FT[@]}" --out "$W/g1k" --gpus 1 --resume "$W/g1k/checkpoints"
cp "$W/g1k/losses.csv" "$R/losses-tiny-g1-resumed.csv" 2>/dev/null
compare "$W/g1/losses.csv" "$W/g1k/losses.csv" "--gpus 1 uninterrupted vs killed+resumed" 0
run "${S[@]}" "${FT[@]}" --out "$W/g1k-so" --gpus 1 --shard-optimizer on --offload-optimizer --resume "$W/g1k-so/checkpoints"
cp "$W/g1k-so/losses.csv" "$R/losses-tiny-g1-resumed-sharded-opt.csv" 2>/dev/null
compare "$W/g1/losses.csv" "$W/g1k-so/losses.csv" "--gpus 1 uninterrupted vs resumed with --shard-optimizer on --offload-optimizer" 0.02

if [ -z "${DIST_SKIP_1B:-}" ]; then
    step "4. Llama-3.2-1B shape: plain vs --gpus 1 --shard-base on (12 steps, batch 8 x 512, checkpointing)"
    run "${S[@]}" make-checkpoint --preset llama-3.2-1b --bnb-4bit --seed 1 --tokenizer "$TOK" --out "$W/1b"
    F1=(finetune --model "$W/1b" --data "$DATA" --steps 12 --batch 8 --seq 512 --packing --checkpointing --seed 7 --save-every 0)
    run "${S[@]}" "${F1[@]}" --out "$W/1b-plain"
    grep -aoE 'finetune step 12/12 .*' "$LOG" | tail -1 | sed 's/^/   plain: /' | tee -a "$LOG" "$R/checks.txt"
    run "${S[@]}" "${F1[@]}" --out "$W/1b-g1s" --gpus 1 --shard-base on
    grep -aoE 'finetune ×1 step 12/12 .*' "$LOG" | tail -1 | sed 's/^/   --gpus 1 sharded: /' | tee -a "$LOG" "$R/checks.txt"
    run "${S[@]}" "${F1[@]}" --out "$W/1b-g1sp" --gpus 1 --shard-base on --shard-optimizer on --prefetch
    grep -aoE 'finetune ×1 step 12/12 .*' "$LOG" | tail -1 | sed 's/^/   --gpus 1 sharded + sharded AdamW + prefetch: /' | tee -a "$LOG" "$R/checks.txt"
    for d in 1b-plain 1b-g1s 1b-g1sp; do
        cp "$W/$d/losses.csv" "$R/losses-$d.csv" 2>/dev/null; cp "$W/$d/summary.md" "$R/summary-$d.md" 2>/dev/null
        echo "   $d: $(grep -h 'tokens trained on' "$W/$d/summary.md" 2>/dev/null)" | tee -a "$LOG" "$R/checks.txt"
    done
    grep -h "NF4 base weights on this GPU" "$LOG" | tail -1 | sed "s/^/   /" | tee -a "$R/checks.txt"
    compare "$W/1b-plain/losses.csv" "$W/1b-g1s/losses.csv" "1B plain vs --gpus 1 --shard-base on" 0.05
    compare "$W/1b-g1s/losses.csv" "$W/1b-g1sp/losses.csv" "1B --gpus 1 --shard-base on vs + --shard-optimizer on --prefetch" 0.02
fi
step "done"; cat "$R/checks.txt"
