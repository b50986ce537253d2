#!/usr/bin/env bash
# Round 22, call 6 (issue 22): Gemma-2-2B's step under Nsight Compute without the fused cross-entropy's GEMM tuner
# (SLOTHSHARP_GEMM_TUNE=0: cuBLASLt's heuristic choices, no candidate runs), timed steps only, two layers at the full
# 8 x 1,024 tokens: where the step goes outside the GEMMs (call 1's profile mixed the tuner's candidates in).
set -uo pipefail
OUT="${1:?usage: lease-r22-6.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
SLOTHSHARP_GEMM_TUNE=0 step_profile 240 gemma-untuned gemma-2-2b-prof fused
