#!/usr/bin/env bash
# Prepared for round 18's first call (issue 22, Gemma-2-2B at 2x on the H100: 28,125 tokens/s in round 16, 29,944
# needed): why the one-pass soft-capped attention is faster on one layer (round 17, H200: 3.07 vs 3.52 ms) but slower
# in the step (backward +14 ms). The two rows on this GPU, then two Gemma-2-2B layers at the full 8 x 1024 tokens under
# Nsight Compute (kernel durations only, grouped by tools/bench/ncu_kernels.py) both ways, and the batch-64 decode rows
# at 512 new tokens (lease-r17d.sh). Each step snapped.
set -uo pipefail
OUT="${1:?usage: lease-r18-gemma-profile.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
step_row gemma-2-2b fused
step_row gemma-2-2b fused-softcap-flash
softcap_row blocks
softcap_row flash
for path in fused fused-softcap-flash; do
    echo "== ncu: gemma-2-2b, two layers, $path"
    timeout 200 ncu --clock-control none --target-processes all --metrics gpu__time_duration.sum --csv \
        dotnet "$bench" --results "$OUT/prof-$path" --suite step-row --shape gemma-2-2b-prof --path "$path" --checkpointing 0 \
        > "$OUT/ncu-gemma-$path.csv" 2> "$OUT/ncu-gemma-$path.err"; echo "exit $?"
    python3 tools/bench/ncu_kernels.py "$OUT/ncu-gemma-$path.csv" > "$OUT/ncu-gemma-$path-summary.txt"
    head -30 "$OUT/ncu-gemma-$path-summary.txt"; gzip -f "$OUT/ncu-gemma-$path.csv"; snap
done
decode_run decode64-512 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512 --dequantized
