#!/usr/bin/env bash
# Round 29 (issue 25): the short form of lease-r29-1.sh, run as round 29's one call (bench/results/2026-12-07-round29).
# The GPU tests of the kernels round 29 reordered (wide NF4 GEMM, attention, tensor-core GEMVs, engine), then batch 64
# and 1 on both shapes: main against variant chain (round 28's three files; lease-r29-1.sh says how to put them in
# the tree).
set -uo pipefail
OUT="${1:?usage: lease-r29-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
chain=tools/gpu-steps/r29-chain
native_variant chain cuda/nf4_gemm_wide.cu "kWideClusterMaxTiles = 2;" "kWideClusterMaxTiles = 2;"
cp "$chain"/* /tmp/nvchain/cuda/
start_variant_builds chain
gpu_tests tests 90 "FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~DecodeEngineGpu"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
decode_run wide "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64,1 --steps 512
wait "${variant_pids[@]}"
decode_run chain "$(variant_lib chain)" --presets qwen3-1.7b,llama-3.2-1b --batches 64,1 --steps 512
decode_run wide-again "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 64 --steps 512
