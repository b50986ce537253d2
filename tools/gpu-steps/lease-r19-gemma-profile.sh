#!/usr/bin/env bash
# Prepared in round 18 for the next session (issue 22: Gemma-2-2B at 2x on the H100; round 18: 28,430 tokens/s with the
# blocked soft-capped attention, 28,852 with the one-pass kernels, 29,944 needed). Round 18's Nsight Compute pass over
# two layers mixed cuBLASLt's tuning candidates (run in the warm-up) into the GEMMs' share; this one collects the timed
# steps only (--profile-timed: cudaProfilerStart/Stop around them, ncu --profile-from-start off), both ways.
set -uo pipefail
OUT="${1:?usage: lease-r19-gemma-profile.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
for path in fused fused-softcap-flash; do
    echo "== ncu (timed steps only): gemma-2-2b, two layers, $path"
    timeout 200 ncu --profile-from-start off --clock-control none --target-processes all --metrics gpu__time_duration.sum --csv \
        dotnet "$bench" --results "$OUT/prof-$path" --suite step-row --shape gemma-2-2b-prof --path "$path" --checkpointing 0 \
        --profile-timed > "$OUT/ncu-gemma-$path.csv" 2> "$OUT/ncu-gemma-$path.err"; echo "exit $?"
    python3 tools/bench/ncu_kernels.py "$OUT/ncu-gemma-$path.csv" > "$OUT/ncu-gemma-$path-summary.txt"
    head -40 "$OUT/ncu-gemma-$path-summary.txt"; gzip -f "$OUT/ncu-gemma-$path.csv"; snap
done
