#!/usr/bin/env bash
# Round 8, third call: PDL bit-equality tests (fixed), the decode benchmark (each launch mode from the same prompt),
# where a batch-1 step's time goes (registers per kernel, ncu occupancy of the GEMVs, an nsys timeline of graph
# nodes when nsys is present), the families' 100-step fused-vs-reference loss match, and Mistral-7B's step memory.
set -uo pipefail
OUT="${1:?usage: lease-r8c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
lib="$(find build -path '*install*' -name libslothsharp.so | grep -v sm75 | head -1)"
echo "== GPU tests: engine, launch modes"
timeout 120 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&FullyQualifiedName~Inference" > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"
summary "$OUT/tests-gpu.log"
echo "== decode benchmark"
timeout 130 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -E "batch|prefill" "$OUT/decode-bench.log"
echo "== registers ($lib)"
cuobjdump -res-usage "$lib" 2>&1 | c++filt | grep -A1 -E "Function .*(nf4_gemv|residual_norm|attention_|qk_prep|dense_gemv|gated_act)" \
    | grep -vE "^--" | paste - - | sed -E 's/ +/ /g' | cut -c1-330 > "$OUT/res-usage.txt"; wc -l < "$OUT/res-usage.txt"
echo "== ncu: GEMV occupancy (batch 1)"
timeout 90 ncu --clock-control none --launch-skip 400 --launch-count 30 -k 'regex:^(nf4_|residual_norm|attention_|qk_prep)' \
    --metrics gpu__time_duration.sum,launch__registers_per_thread,launch__occupancy_limit_registers,launch__grid_size,sm__warps_active.avg.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed \
    --csv dotnet "$bench" --suite decode --presets llama-3.2-1b --batches 1 --steps 4 --prefill 0 > "$OUT/ncu-occupancy.csv" 2> "$OUT/ncu.err"; echo "exit $?"
NSYS="$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)"
echo "== nsys: ${NSYS:-not found}"
if [ -n "$NSYS" ]; then
    timeout 90 "$NSYS" profile --cuda-graph-trace=node -t cuda -o /tmp/dec --force-overwrite true \
        dotnet "$bench" --suite decode --presets llama-3.2-1b --batches 1 --steps 40 --prefill 0 > "$OUT/nsys.log" 2>&1; echo "exit $?"
    timeout 60 "$NSYS" stats -q --report cuda_gpu_trace --format csv -o /tmp/dec-trace /tmp/dec.nsys-rep >> "$OUT/nsys.log" 2>&1
    f="$(ls /tmp/dec-trace*.csv 2>/dev/null | head -1)"; [ -n "$f" ] && tail -n 700 "$f" | gzip > "$OUT/nsys-trace-tail.csv.gz"
fi
echo "== families: 100-step loss match, fused vs reference (six layers of each published shape)"
for s in qwen2.5-1.5b qwen3-1.7b gemma-3-1b phi-4-mini mistral-7b llama-3.1-8b; do
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 60 dotnet "$bench" --results "$OUT" --suite step-loss --shape "$s-loss" --device cuda \
        >> "$OUT/step-loss.log" 2>&1; echo "$s exit $?"
done
echo "== Mistral-7B step, every layer checkpointed"
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 110 dotnet "$bench" --results "$OUT" --suite step-row --shape mistral-7b --path fused --checkpointing 1 \
    > "$OUT/step-mistral.log" 2>&1; echo "exit $?"; grep -oE '"TokensPerSecond":[0-9.]+|"PeakGb":[0-9.]+' "$OUT/step-mistral.log"
