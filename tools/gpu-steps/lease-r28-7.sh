#!/usr/bin/env bash
# Round 28 (issue 25), on branch r28-wide-v3 after lease-r28-5: the wide NF4 GEMM adds its splits' sums inside clusters
# only at 2 n-tiles (batch 9-16; faster there), through the scratch and a second launch past 16 rows (faster at batch
# 64). A short call: (1) the wide GEMM's and the engine's tests (batch 12 through the clusters, 20-64 the scratch);
# (2) batch 64, 32 and 16, NF4, Qwen3-1.7B and Llama-3.2-1B, 512 new tokens; (3) variant nowide (main's dequantize +
# cuBLASLt path) at batch 32, the batch lease-r28-5 did not time.
set -uo pipefail
OUT="${1:?usage: lease-r28-7.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant nowide cuda/nf4_gemm_wide.cu "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) {" \
    "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) { if (g.batch > 0) return false;"
start_variant_builds nowide
gpu_tests tests 100 "FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeTensorCoreGemv"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
decode_run wide "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64,32,16 --steps 512
wait "${variant_pids[@]}"
decode_run nowide "$(variant_lib nowide)" --presets qwen3-1.7b,llama-3.2-1b --batches 32 --steps 512
