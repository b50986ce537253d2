#!/usr/bin/env bash
# Round 17, call 2 (same bundle as lease-r17b-1.sh, a warm machine): the same-call baselines and the rest of the
# round's measurements, each step snapped: the soft-capped attention layer by blocks and the Gemma-2-2B step as main
# runs it; Phi-4-mini with RecomputeNorms with and without the folded LoRA delta (round 16: 26,278 at 22.58 GB); the
# sanitizers on the one-pass kernels and the decode attention.
set -uo pipefail
OUT="${1:?usage: lease-r17b-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
softcap_row blocks
step_row gemma-2-2b fused
step_row phi-4-mini fused-recompute-norms
step_row phi-4-mini fused-recompute-norms-fold
memcheck sanitizer-decode-attention 120 "FullyQualifiedName~DecodeAttentionGpuTests"
memcheck sanitizer-flash 120 "FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
racecheck racecheck-flash 120 "FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
[ -f "$lib75" ] && sm75_tests tests-sm75 240 "FullyQualifiedName~SwiGlu|FullyQualifiedName~RopeTests|FullyQualifiedName~Softcap|FullyQualifiedName~DecodeAttention"
