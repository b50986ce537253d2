#!/usr/bin/env bash
# Round 16, second call (not run: no machine could be started): the one-pass soft-capped attention after the first
# run (where its tile loads waited for each load: 6.72 ms a Gemma-2-2B layer against the blocks' 3.84) now loads its
# tiles and masks with cp.async. softcap-row flash/blocks time the layer both ways; the Gemma-2-2B step runs both ways
# (fused-softcap-flash: CausalLM.SoftcapAttentionMethod = Flash; fused: the blocks, call 1's 28,125 tokens/s at
# 21.10 GB). Then the tests (the kernels, and the model option in bf16 on CUDA) and the sanitizers. Every step snaps.
# Run with SLOTHSHARP_SM75=0 (or 1, adding sm75_tests, when the budget allows).
set -uo pipefail
OUT="${1:?usage: lease-r16-flash2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
# The figures first (a start that found no machine ate most of the budget), then whether they can be trusted.
softcap_row flash
step_row gemma-2-2b fused-softcap-flash
gpu_tests tests-softcap 120 "FullyQualifiedName~Softcap"
softcap_row blocks
step_row gemma-2-2b fused
memcheck sanitizer-flash 120 "FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
racecheck racecheck-flash 120 "FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
