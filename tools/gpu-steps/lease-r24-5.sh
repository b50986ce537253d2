#!/usr/bin/env bash
# Round 24, call 5 (issue 25): the wide NF4 GEMM (cuda/nf4_gemm_wide.cu: past 8 rows, the NF4 weights on tensor cores
# instead of a dequantized copy for cuBLASLt). Its GPU tests and the decode tests around it; then batch 16 and 64 with
# NF4 weights, wide (tiles on) against the dequantize + cuBLASLt path (tiles off) in one engine, and against dense
# copies (DequantizeWeights, the batch-64 figure so far); batch 1 for regressions. 512 new tokens, both presets.
# Round 24's attention chunk change (512 keys a block from batch 32) is in this tree too.
set -uo pipefail
OUT="${1:?usage: lease-r24-5.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests wide-tests 240 "FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeAttentionGpuTests|FullyQualifiedName~DecodeTensorCoreGemv"
grep -E "^failed|Failed [A-Z]" "$OUT/wide-tests.log" | head -20
cuobjdump -res-usage "$SLOTHSHARP_NATIVE_PATH" 2>/dev/null | grep -A1 "nf4_wide_kernel" | grep -oE "REG:[0-9]+|STACK:[0-9]+|LOCAL:[0-9]+|SHARED:[0-9]+" | paste - - - - | tee "$OUT/res-usage-wide.txt"
decode_run "b64-nf4" "$SLOTHSHARP_NATIVE_PATH" --gemv tiles,lanes --presets llama-3.2-1b,qwen3-1.7b --batches 16,64 --steps 512
decode_run "b64-dense" "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets llama-3.2-1b,qwen3-1.7b --batches 64 --steps 512
decode_run "b1" "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512
