#!/usr/bin/env bash
# Round 25, branch r25 (the wide NF4 GEMM's second version + the decode attention's tensor-core walk), one call:
# (1) the attention, wide GEMM and engine GPU tests; (2) the tensor-core walk against the sub-warp walk (a native
# variant with kDecodeMmaMinBatch out of reach, built while the tests run) on dense copies at batch 16 and 64, both
# presets, 512 new tokens, equal prompts (seeded); (3) the wide NF4 GEMM at batch 16 and 64 with the new attention.
set -uo pipefail
OUT="${1:?usage: lease-r25-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant nomma src/decode_kernels.h "constexpr int64_t kDecodeMmaMinBatch = kDecodeSmallBatch + 1;" "constexpr int64_t kDecodeMmaMinBatch = 1000000000;"
( build_native_variant /tmp/nvnomma /tmp/nvnomma-install > "$OUT/build-nomma.log" 2>&1; echo "build nomma: exit $?" ) &
vpid=$!
libN=/tmp/nvnomma-install/runtimes/linux-x64/native/libslothsharp.so
gpu_tests tests 240 "FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeTensorCoreGemv"
grep -E "^failed" -A8 "$OUT/tests.log" | head -60
cuobjdump -res-usage "$SLOTHSHARP_NATIVE_PATH" 2>/dev/null | grep -A1 -E "attention_kernel|nf4_wide_kernel" > "$OUT/res-usage.txt"
grep -oE "REG:[0-9]+|STACK:[0-9]+|LOCAL:[0-9]+" "$OUT/res-usage.txt" | paste - - - | sort | uniq -c
decode_run dense-mma "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets llama-3.2-1b,qwen3-1.7b --batches 16,64 --steps 512
wait "$vpid"
decode_run dense-nomma "$libN" --dequantized --presets llama-3.2-1b,qwen3-1.7b --batches 16,64 --steps 512
decode_run wide-mma "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 16,64 --steps 512
decode_run dequant-mma "$SLOTHSHARP_NATIVE_PATH" --gemv lanes --presets qwen3-1.7b --batches 64 --steps 512
