#!/usr/bin/env bash
# Prepared in round 18 for the next session (issue 22: Gemma-2-2B at 2x on the H100; round 18: 28,430 tokens/s with the
# blocked soft-capped attention, 28,852 with the one-pass kernels, 29,944 needed). Round 18's Nsight Compute pass over
# two layers mixed cuBLASLt's tuning candidates (run in the warm-up) into the GEMMs' share; this one collects the timed
# steps only (--profile-timed: cudaProfilerStart/Stop around them, ncu --profile-from-start off), both ways.
set -uo pipefail
OUT="${1:?usage: lease-r19-gemma-profile.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
for path in fused fused-softcap-flash; do
    echo "== ncu (timed steps only): gemma-2-2b, two layers, $path"
    step_profile 200 "gemma-$path" gemma-2-2b-prof "$path"
done
