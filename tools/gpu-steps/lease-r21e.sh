#!/usr/bin/env bash
# Round 21, call 5 (issue 25), chained on the warm machine: compute-sanitizer over the tensor-core NF4 GEMVs (the op's
# tests on CUDA: the single tile kernel with 8 and 16 warps; the engine on a wide-MLP model: grouped, gated and
# 16-warp single tiles), memcheck then racecheck.
set -uo pipefail
OUT="${1:?usage: lease-r21e.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
memcheck memcheck-tiles 150 "FullyQualifiedName~Nf4GemvTests|FullyQualifiedName~WideDownProjection"
racecheck racecheck-tiles 120 "FullyQualifiedName~Nf4GemvTests"
