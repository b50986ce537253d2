#!/usr/bin/env bash
# Round 15, third call (branch h-round15): what round 15's Phi-4-mini profile (lease-r15b) pointed at, all same bits.
# - the fused gate_up output read in place by the packed gated activation (no split copies; one packed gradient
#   instead of narrow's zero-filled halves and their sum): ~1 ms of each layer's ~9.5 ms;
# - the fused qkv output split with split() (one cat in backward instead of three zero-filled copies and two adds);
# - the RoPE kernel with a warp per head vector (it paid three 64-bit divisions per element);
# - CausalLM.RecomputeNorms (the norm outputs the projections kept, recomputed in backward; helper branch).
# GPU tests of what changed; memcheck of the new kernels; the QLoRA step of Phi-4-mini (fused, fused-recompute),
# Llama-3.2-1B and Qwen3-1.7B (fused); the Phi-4-mini two-layer profile again. About 6 minutes.
set -uo pipefail
OUT="${1:?usage: lease-r15c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests-gpu 150 "FullyQualifiedName~SwiGlu|FullyQualifiedName~Rope|FullyQualifiedName~RecomputedNorms|FullyQualifiedName~Nf4LoraLinear|FullyQualifiedName~LlamaFusedTests|FullyQualifiedName~GqaAttention"
row() {  # SHAPE PATH
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 dotnet "$bench" --results "$OUT" --suite step-row --shape "$1" \
        --path "$2" --checkpointing 0 >> "$OUT/rows.log" 2>&1; echo "$1 $2 exit $?"
    grep -oE '"Shape":"[^"]+"|"Path":"[^"]+"|"TokensPerSecond":[0-9.]+|"PeakGb":[0-9.]+|"PhaseMs":\[[^]]+\]' "$OUT/rows.log" | paste - - - - - | tail -1; snap
}
row phi-4-mini fused
row phi-4-mini fused-recompute
row 1b fused
memcheck sanitizer 90 "FullyQualifiedName~SwiGluPacked|FullyQualifiedName~RopeTests"
row qwen3-1.7b fused
echo "== ncu: phi-4-mini, two layers"
timeout 150 ncu --clock-control none --target-processes all --metrics gpu__time_duration.sum --csv \
    dotnet "$bench" --results "$OUT/prof" --suite step-row --shape phi-4-mini-prof --path fused --checkpointing 0 \
    > "$OUT/ncu-phi.csv" 2> "$OUT/ncu-phi.err"; echo "exit $?"
python3 tools/bench/ncu_kernels.py "$OUT/ncu-phi.csv" > "$OUT/ncu-phi-summary.txt"; head -5 "$OUT/ncu-phi-summary.txt"; snap
