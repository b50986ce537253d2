#!/usr/bin/env bash
# Round 15, second call (branch h-round15 = main + h-round14 + h-gqa-recompute, warm machine after lease-r14.sh):
# issue 22's CausalLM.RecomputeAttention. Its GPU tests; the QLoRA step of Phi-4-mini (the target: 1.74x at 43% of
# transformers' memory in round 10, >= 2x at <= 35% wanted) fused and fused-recompute-attention, Llama-3.2-1B fused (no
# regression: nothing changes unless the option is on); then where Phi-4-mini's step time goes: two layers at the
# full 8 x 1024 tokens under Nsight Compute (kernel durations only), grouped by tools/bench/ncu_kernels.py.
# One process per row, so each peak is its own. About 7 minutes.
set -uo pipefail
OUT="${1:?usage: lease-r15b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests-gqa 120 "FullyQualifiedName~GqaAttention|FullyQualifiedName~LlamaFusedTests"
row() {  # SHAPE PATH
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 dotnet "$bench" --results "$OUT" --suite step-row --shape "$1" \
        --path "$2" --checkpointing 0 >> "$OUT/rows.log" 2>&1; echo "$1 $2 exit $?"
    grep -oE '"Shape":"[^"]+"|"Path":"[^"]+"|"TokensPerSecond":[0-9.]+|"PeakGb":[0-9.]+|"PhaseMs":\[[^]]+\]' "$OUT/rows.log" | paste - - - - - | tail -1; snap
}
row phi-4-mini fused
row phi-4-mini fused-recompute-attention
row 1b fused
echo "== ncu: phi-4-mini, two layers"
timeout 200 ncu --clock-control none --target-processes all --metrics gpu__time_duration.sum --csv \
    dotnet "$bench" --results "$OUT/prof" --suite step-row --shape phi-4-mini-prof --path fused --checkpointing 0 \
    > "$OUT/ncu-phi.csv" 2> "$OUT/ncu-phi.err"; echo "exit $?"
tail -3 "$OUT/ncu-phi.err"
python3 tools/bench/ncu_kernels.py "$OUT/ncu-phi.csv" | tee "$OUT/ncu-phi-summary.txt" | head -45; snap
