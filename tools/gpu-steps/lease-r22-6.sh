#!/usr/bin/env bash
# Round 22, call 6 (issue 22): Gemma-2-2B's step under Nsight Compute without the fused cross-entropy's GEMM tuner
# (SLOTHSHARP_GEMM_TUNE=0: cuBLASLt's heuristic choices, no candidate runs), timed steps only, two layers at the full
# 8 x 1,024 tokens: where the step goes outside the GEMMs (call 1's profile mixed the tuner's candidates in).
set -uo pipefail
OUT="${1:?usage: lease-r22-6.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
SLOTHSHARP_GEMM_TUNE=0 timeout 240 ncu --profile-from-start off --clock-control none --target-processes all \
    --metrics gpu__time_duration.sum --csv \
    dotnet "$bench" --results "$OUT/prof-fused" --suite step-row --shape gemma-2-2b-prof --path fused --checkpointing 0 \
    --profile-timed > "$OUT/ncu-gemma-untuned.csv" 2> "$OUT/ncu-gemma-untuned.err"; echo "exit $?"
python3 tools/bench/ncu_kernels.py "$OUT/ncu-gemma-untuned.csv" > "$OUT/ncu-gemma-untuned-summary.txt"
head -60 "$OUT/ncu-gemma-untuned-summary.txt"; gzip -f "$OUT/ncu-gemma-untuned.csv"; snap
