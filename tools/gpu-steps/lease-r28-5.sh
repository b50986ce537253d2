#!/usr/bin/env bash
# Round 28 (issue 25), on branch r28-wide-v3: the wide NF4 GEMM's third version (batch 9 to 64 on tensor cores from the
# NF4 weights; q/k/v one launch, gate/up one gated launch; the splits over k of a row block are one thread-block
# cluster that adds its sums in shared memory, so no second launch and no float32 scratch on sm_90).
# (1) The wide GEMM's tests and the other decode tests that run NF4 products past 8 rows; (2) batch 64 and 16, NF4,
# Qwen3-1.7B and Llama-3.2-1B, 512 new tokens; (3) variant nocluster (the sm_80-89 code's way: partials through global
# memory and a second launch) must give the same digests; (4) variant nowide (main's dequantize + cuBLASLt path) and
# the dense copies, the same rows, for the comparison; (5) each projection class alone, as time allows.
set -uo pipefail
OUT="${1:?usage: lease-r28-5.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant nowide cuda/nf4_gemm_wide.cu "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) {" \
    "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) { if (g.batch > 0) return false;"
native_variant nocluster cuda/nf4_gemm_wide.cu "clusters_compiled()" "(false \&\& clusters_compiled())"
start_variant_builds nowide nocluster
gpu_tests tests 130 "FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeTensorCoreGemv"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
rows="--presets qwen3-1.7b,llama-3.2-1b --batches 64,16 --steps 512"
decode_run wide "$SLOTHSHARP_NATIVE_PATH" $rows
wait "${variant_pids[@]}"
decode_run nocluster "$(variant_lib nocluster)" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
decode_run nowide "$(variant_lib nowide)" $rows
decode_run dense "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512 --dequantized
only="--presets qwen3-1.7b --batches 64 --steps 512 --only Qkv,O,GateUp,Down"
decode_run wide-only "$SLOTHSHARP_NATIVE_PATH" $only
decode_run nowide-only "$(variant_lib nowide)" $only
