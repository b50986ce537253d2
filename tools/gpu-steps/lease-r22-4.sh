#!/usr/bin/env bash
# Round 22, call 4 (main): the compute_75 build (the T4 code path, JIT on this GPU) on the tests of round 21's tensor-core
# GEMVs (which fall back to the lane kernels there) and of the training kernels of rounds 15-16 (the packed gated
# activation, the fused projections' split, RoPE, the recomputed norms and attention, the soft-capped attention).
set -uo pipefail
OUT="${1:?usage: lease-r22-4.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sm75_tests sm75 420 "FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~SwiGlu|FullyQualifiedName~Nf4LoraLinear|FullyQualifiedName~Recompute|FullyQualifiedName~Rope|FullyQualifiedName~Softcap|FullyQualifiedName~LlamaFused"
grep -E "Expected|But was" "$OUT/sm75.log" | head -10
