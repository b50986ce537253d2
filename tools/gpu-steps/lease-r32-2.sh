#!/usr/bin/env bash
# Round 32, call 2 (the same warm machine as call 1, the tree again switched to ALL; run with SLOTHSHARP_SM75=1 so that
# gpu-run also builds the compute_75 library): (1) the T4 code path: the decode and NF4 GEMV GPU tests against the
# compute_75 build (PTX JIT here; the trigger, clusters and tensor-core tiles are compiled out or not taken below
# sm_80/sm_90, so this checks that the switches leave that path whole); (2) compute-sanitizer memcheck over the
# engine, persistent and attention GPU tests on ALL (the fused preparation's cache writes and reads, the staged x, the
# prefetches).
set -uo pipefail
OUT="${1:?usage: lease-r32-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
decode_filter="FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeAttentionGpu"
sm75_tests tests-sm75 240 "$decode_filter|FullyQualifiedName~Nf4Gemv"
grep -E "^failed" -A8 "$OUT/tests-sm75.log" | head -30
memcheck memcheck 200 "($decode_filter)&FullyQualifiedName!~TwoLaunchesAStep"
