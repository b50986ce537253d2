#!/usr/bin/env bash
# Issue 25: where a decode step's time goes. The decode benchmark (llama-3.2-1b) as is, then under Nsight Compute
# (kernel durations only, clocks left alone), summarized per step and per kernel by tools/bench/ncu_steps.py.
# PROFILE_BATCHES (default 1,64) chooses the batch sizes profiled, e.g. PROFILE_BATCHES=64 for the batch-64 step only;
# PROFILE_FUSIONS (default None; branches with decode fusions) the one fusion set profiled besides plain launches.
set -uo pipefail
OUT="${1:?usage: lease-profile.sh OUTDIR}"
bench="$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll"
echo "== decode benchmark"
timeout 120 dotnet "$bench" --suite decode --presets llama-3.2-1b --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
tail -8 "$OUT/decode-bench.log"
echo "== ncu"
timeout 300 ncu --clock-control none --target-processes all --launch-count 2600 \
    -k 'regex:^(attention_|bias_add|dense_gemv|embed_|gated_act|increment|logits_finish|nf4_|qk_prep|residual_norm|nvjet|sm90|cutlass|gemm)' \
    --metrics gpu__time_duration.sum --csv dotnet "$bench" --suite decode --presets llama-3.2-1b --batches "${PROFILE_BATCHES:-1,64}" --fusions "${PROFILE_FUSIONS:-None}" --steps 2 --prefill 0 \
    > "$OUT/ncu.csv" 2> "$OUT/ncu.err"; echo "exit $?"
tail -3 "$OUT/ncu.err"
python3 tools/bench/ncu_steps.py "$OUT/ncu.csv" | tee "$OUT/ncu-summary.txt"
