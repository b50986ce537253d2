#!/usr/bin/env bash
# Round 18, call 1 (main bcbd0d9): the GPU tests of the one-pass soft-capped kernels after the review's
# query_tile/stage_key_tile refactor (never run on a GPU), then issue 22's Gemma-2-2B question: why the one-pass
# attention is faster on one layer but slower in the step. Both step rows on this GPU, then two Gemma-2-2B layers at the
# full 8 x 1024 tokens under Nsight Compute (kernel durations, grouped by tools/bench/ncu_kernels.py) both ways.
set -uo pipefail
OUT="${1:?usage: lease-r18a.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests softcap-tests 150 "FullyQualifiedName~Softcap"
step_row gemma-2-2b fused
step_row gemma-2-2b fused-softcap-flash
for path in fused fused-softcap-flash; do
    echo "== ncu: gemma-2-2b, two layers, $path"
    timeout 150 ncu --clock-control none --target-processes all --metrics gpu__time_duration.sum --csv \
        dotnet "$bench" --results "$OUT/prof-$path" --suite step-row --shape gemma-2-2b-prof --path "$path" --checkpointing 0 \
        > "$OUT/ncu-gemma-$path.csv" 2> "$OUT/ncu-gemma-$path.err"; echo "exit $?"
    python3 tools/bench/ncu_kernels.py "$OUT/ncu-gemma-$path.csv" > "$OUT/ncu-gemma-$path-summary.txt"
    head -40 "$OUT/ncu-gemma-$path-summary.txt"; gzip -f "$OUT/ncu-gemma-$path.csv"; snap
done
