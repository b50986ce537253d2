#!/usr/bin/env bash
# Round 28 (issue 25), on branch r28-wide-v3 after lease-r28-5: the wide NF4 GEMM adds its splits' sums inside clusters
# only at 2 n-tiles (batch 9-16; faster there), through the scratch and a second launch past 16 rows (faster at batch
# 64). (1) The wide GEMM's and the engine's tests (batch 12 clusters, 20-64 the scratch); (2) batch 16, 32 and 64,
# NF4, Qwen3-1.7B and Llama-3.2-1B, 512 new tokens, against variant nowide (main's dequantize + cuBLASLt path) and, at
# batch 32, variant cl4 (clusters up to 4 n-tiles).
set -uo pipefail
OUT="${1:?usage: lease-r28-7.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant nowide cuda/nf4_gemm_wide.cu "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) {" \
    "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) { if (g.batch > 0) return false;"
native_variant cl4 cuda/nf4_gemm_wide.cu "constexpr int kWideClusterMaxTiles = 2;" "constexpr int kWideClusterMaxTiles = 4;"
start_variant_builds nowide cl4
gpu_tests tests 120 "FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeTensorCoreGemv"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
rows="--presets qwen3-1.7b,llama-3.2-1b --batches 64,32,16 --steps 512"
decode_run wide "$SLOTHSHARP_NATIVE_PATH" $rows
wait "${variant_pids[@]}"
decode_run nowide "$(variant_lib nowide)" $rows
decode_run cl4 "$(variant_lib cl4)" --presets qwen3-1.7b,llama-3.2-1b --batches 32 --steps 512
