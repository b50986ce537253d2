#!/usr/bin/env bash
# Issue 16's "done when", for a machine with 2 GPUs (nvidia-h200-x2 or two H100s): a Llama-3.1-8B-shaped random
# bnb-4bit checkpoint, QLoRA 50 steps on 1 GPU vs `--gpus 2`, the same global batch. Variants on 2 GPUs:
#   two-gpu-sharded            the defaults: NF4 base sharded + AdamW state sharded (ShardedAdamW, reduce-scattered grads)
#   two-gpu-prefetch           + --prefetch (the next layer all-gathered on a side CUDA stream while the current computes)
#   two-gpu-prefetch-offload   + --prefetch --offload-optimizer (AdamW moments in host memory, updated on the CPU)
#   two-gpu-adamw-replicated   --shard-optimizer off (phase 1: gradients all-reduced, AdamW replicated)
#   two-gpu-replicated         --shard-base off (NF4 base replicated, fused kernels)
#   one-worker-sharded         --gpus 1 --shard-base on --shard-optimizer on --prefetch (the distributed code on 1 GPU)
#   SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_BENCH=0 SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/dist-8b-2gpu.sh \
#     ./build.sh gpu-run $OUT
# Reports (in $OUT/dist-8b.log and dist-8b.tar.gz): per-GPU peak memory (nvidia-smi sampled every 0.5 s), tokens/s and
# the scaling 2 GPUs / 1 GPU, the loss curves (losses-*.csv, loss-curves.png) and their max difference (equal up to
# bf16 rounding: the 2-GPU step is the 1-GPU step's global batch split by rows, one global token normalizer).
# What to look for: every run's max |loss - one-gpu| small (bf16 rounding; the sharded base runs the unfused NF4 path),
# per-GPU peak memory of two-gpu-sharded well below one-gpu's, prefetch's tokens/s ≥ two-gpu-sharded's, offload's
# peak memory a little lower still (the AdamW moments of the LoRA adapters are small), speed-up vs one-gpu.
# Knobs: DIST_STEPS (50), DIST_BATCH (8 rows per step), DIST_SEQ (1024), DIST_SKIP_REPLICATED=1 (skips the two
# replicated variants), DIST_SKIP_VARIANTS=1 (skips prefetch/offload/adamw-replicated: the phase-1 set only),
# DIST_SKIP_ONE_WORKER=1 (skips the one-worker-sharded run: one-gpu vs two-gpu-sharded only).
# Expected GPU time: checkpoint writing (a few minutes, CPU-bound) + up to 7 runs of 50 steps (~15-25 min on
# H200s); with DIST_STEPS=20 DIST_SKIP_REPLICATED=1 about half.
set -uo pipefail
OUT="${1:?usage: dist-8b-2gpu.sh OUTDIR}"
W=/tmp/sloth-dist8b; R="$W/results"
rm -rf "$W"; mkdir -p "$R"
S=(dotnet "$SLOTHSHARP_APPS/sloth/sloth.dll")
TOK=tests/data/hf-tiny-llama/dense
DATA=src/Cli/Assets/alice-chapter1.txt
LOG="$OUT/dist-8b.log"
STEPS="${DIST_STEPS:-50}"; BATCH="${DIST_BATCH:-8}"; SEQ="${DIST_SEQ:-1024}"
step() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
fin() { cp "$LOG" "$R/" 2>/dev/null; tar -C "$W" -czf "$OUT/dist-8b.tar.gz" results; }
trap fin EXIT
trap 'exit 143' TERM  # a timeout's SIGTERM still packs what was measured (the EXIT trap runs)
nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee -a "$LOG"
ngpu=$(nvidia-smi -L | wc -l)
[ "$ngpu" -ge 2 ] || { echo "this machine has $ngpu GPU(s); dist-8b-2gpu.sh needs 2" | tee -a "$LOG"; exit 1; }

# run NAME ARGS...: one fine-tuning run with nvidia-smi sampling memory of every GPU; writes $R/NAME.{mem,time}
run() {
    local name=$1; shift
    step "$name: ${*}"
    nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 500 > "$W/$name.smi" &
    local smi=$! t0; t0=$(date +%s.%N)
    "${S[@]}" "$@" >>"$LOG" 2>&1; local rc=$?
    local t1; t1=$(date +%s.%N)
    kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
    python3 - "$W/$name.smi" "$name" "$rc" "$t0" "$t1" <<'PY' | tee -a "$LOG" "$R/summary.txt"
import sys, collections
peak = collections.defaultdict(int)
for line in open(sys.argv[1]):
    try:
        i, m = (int(x) for x in line.split(","))
    except ValueError:
        continue
    peak[i] = max(peak[i], m)
print(f"{sys.argv[2]}: exit {sys.argv[3]}, wall {float(sys.argv[5]) - float(sys.argv[4]):.1f} s, peak MiB per GPU: "
      + ", ".join(f"gpu{i} {peak[i]}" for i in sorted(peak)))
PY
    cp "$W/$name/losses.csv" "$R/losses-$name.csv" 2>/dev/null
    cp "$W/$name/summary.md" "$R/summary-$name.md" 2>/dev/null
    return $rc
}

step "Llama-3.1-8B-shaped bnb-4bit checkpoint (random N(0, 0.02) weights)"
t0=$SECONDS
"${S[@]}" make-checkpoint --preset llama-3.1-8b --bnb-4bit --seed 1 --tokenizer "$TOK" --out "$W/8b" >>"$LOG" 2>&1 || { echo "make-checkpoint failed" | tee -a "$LOG"; exit 1; }
echo "   ($((SECONDS - t0)) s)"; du -sh "$W/8b" | tee -a "$LOG"

FT=(finetune --model "$W/8b" --data "$DATA" --steps "$STEPS" --batch "$BATCH" --seq "$SEQ" --packing --checkpointing
    --lr 2e-4 --warmup 5 --seed 7 --save-every 0)
run one-gpu "${FT[@]}" --out "$W/one-gpu" --device cuda
run two-gpu-sharded "${FT[@]}" --out "$W/two-gpu-sharded" --gpus 2
if [ -z "${DIST_SKIP_VARIANTS:-}" ]; then
    run two-gpu-prefetch "${FT[@]}" --out "$W/two-gpu-prefetch" --gpus 2 --prefetch
    run two-gpu-prefetch-offload "${FT[@]}" --out "$W/two-gpu-prefetch-offload" --gpus 2 --prefetch --offload-optimizer
    [ -n "${DIST_SKIP_REPLICATED:-}" ] || run two-gpu-adamw-replicated "${FT[@]}" --out "$W/two-gpu-adamw-replicated" --gpus 2 --shard-optimizer off
fi
[ -n "${DIST_SKIP_REPLICATED:-}" ] || run two-gpu-replicated "${FT[@]}" --out "$W/two-gpu-replicated" --gpus 2 --shard-base off
[ -n "${DIST_SKIP_ONE_WORKER:-}" ] || run one-worker-sharded "${FT[@]}" --out "$W/one-worker-sharded" --gpus 1 --shard-base on --shard-optimizer on --prefetch

step "comparison"
python3 - "$R" <<'PY' | tee -a "$LOG" "$R/summary.txt"
import csv, glob, os, re, sys
R = sys.argv[1]
runs = {}
for f in sorted(glob.glob(os.path.join(R, "losses-*.csv"))):
    name = os.path.basename(f)[7:-4]
    runs[name] = [float(r["loss"]) for r in csv.DictReader(open(f))]
def rate(name):  # tokens/s over the whole session (first step's warm-up included) from summary.md
    try:
        md = open(os.path.join(R, f"summary-{name}.md")).read()
        m = re.search(r"tokens trained on: ([\d,]+); this session's wall time ([\d.]+) s", md)
        return int(m.group(1).replace(",", "")) / float(m.group(2))
    except Exception:
        return float("nan")
base = runs.get("one-gpu")
for name, losses in runs.items():
    line = f"{name}: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}, {rate(name):,.0f} tokens/s"
    if base and name != "one-gpu":
        n = min(len(base), len(losses))
        line += f", max |loss - one-gpu| {max(abs(a - b) for a, b in zip(base[:n], losses[:n])):.3g}, speed-up x{rate(name) / rate('one-gpu'):.2f}"
    print(line)
try:
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
    for name, losses in runs.items(): plt.plot(range(1, len(losses) + 1), losses, label=name)
    plt.xlabel("step"); plt.ylabel("loss"); plt.legend(); plt.title("Llama-3.1-8B shape, QLoRA, 1 vs 2 GPUs")
    plt.savefig(os.path.join(R, "loss-curves.png"), dpi=100)
except Exception as e:
    print(f"(no plot: {e})")
PY
step "done"
