#!/usr/bin/env bash
# Prepared in round 23 for the next lease (issue 25; not run yet): the fusions that fold launches away (Norm: the
# residual norms into the grouped GEMVs that read them; AttentionMerge: the partials' merge into the attention's last
# block) were last timed at batch 1 in round 20, before the tensor-core GEMVs (round 21) changed what a GEMV block
# costs; time them again on the tiles. Also round 23's GPU test of the grouped soft-capped attention at every group
# size (SoftcapAttentionOptionTests, written after round 23's calls).
set -uo pipefail
OUT="${1:?usage: lease-r24-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests softcap-option 120 "FullyQualifiedName~SoftcapAttentionOptionTests|FullyQualifiedName~SoftcapAttentionTests"
grep -E "^failed" "$OUT/softcap-option.log" | head -10
decode_run fusions-b1 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --fusions None,Norm,AttentionMerge,3
