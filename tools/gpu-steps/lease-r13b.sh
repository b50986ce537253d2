#!/usr/bin/env bash
# Round 13, second call (not run: the session's device time ran out; run it next): the compute_75 build's decode
# tests (PTX only, JIT on this GPU, __CUDA_ARCH__ = 750: the T4 code path; NF4 GEMV, attention with its combine,
# engine, fusions, launch modes), then racecheck on the NF4 GEMV and attention tests. Run it with SLOTHSHARP_SM75=1.
set -uo pipefail
OUT="${1:?usage: lease-r13b.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== compute_75 build: NF4 GEMV, attention, engine, fusions, launch modes"
sm75_tests tests-sm75 240 "FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeFusionGpu|FullyQualifiedName~DecodeLaunchMode"
echo "== racecheck (sm_90 build): NF4 GEMV and attention tests"
racecheck racecheck 90 "FullyQualifiedName~Nf4GemvTests|FullyQualifiedName~DecodeAttentionGpu"
