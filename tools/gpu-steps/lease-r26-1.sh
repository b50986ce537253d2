#!/usr/bin/env bash
# Round 26, branch r25 (at 15fe0cd), one call (ran: bench/results/2026-12-07-round26/call1-h100), front-loaded (each
# step's results are packed as it ends, so a call cut short still returns them): (1) the decode attention's GPU tests,
# the tensor-core walk among them; (2) Qwen3-1.7B and Llama-3.2-1B at batch 64 on dense copies, the tensor-core walk
# (this tree) against a native variant without it (nomma); (3) batch 1 with the tensor-core walk from batch 1 and
# 64-key chunks (m64: one 16-key tile per warp of a block) against this tree (16-key chunks, sub-warp walk), its
# attention tests on that library first, m64 also with the last-block merge; (4) the wide NF4 GEMM's tests and batch
# 16/64 rows if time is left.
set -uo pipefail
OUT="${1:?usage: lease-r26-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
mma_line="constexpr int64_t kDecodeMmaMinBatch = kDecodeSmallBatch + 1;"
native_variant nomma src/decode_kernels.h "$mma_line" "constexpr int64_t kDecodeMmaMinBatch = 1000000000;"
native_variant m64 src/decode_kernels.h "$mma_line" "constexpr int64_t kDecodeMmaMinBatch = 1;" \
    src/decode_kernels.h "constexpr int64_t kDecodeSmallMinChunk = 16;" "constexpr int64_t kDecodeSmallMinChunk = 64;"
pids=()
for v in nomma m64; do
    ( build_native_variant "/tmp/nv$v" "/tmp/nv$v-install" > "$OUT/build-$v.log" 2>&1; echo "build $v: exit $?" ) &
    pids+=($!)
done
lib() { echo "/tmp/nv$1-install/runtimes/linux-x64/native/libslothsharp.so"; }
gpu_tests attn-tests 120 "FullyQualifiedName~DecodeAttentionGpu"
grep -E "^failed" -A8 "$OUT/attn-tests.log" | head -40
cuobjdump -res-usage "$SLOTHSHARP_NATIVE_PATH" 2>/dev/null | grep -A1 -E "attention_kernel" > "$OUT/res-usage.txt"
grep -oE "REG:[0-9]+|STACK:[0-9]+|LOCAL:[0-9]+" "$OUT/res-usage.txt" | paste - - - | sort | uniq -c
decode_run dense-mma "$SLOTHSHARP_NATIVE_PATH" --dequantized --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
wait "${pids[@]}"
decode_run dense-nomma "$(lib nomma)" --dequantized --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
SLOTHSHARP_NATIVE_PATH="$(lib m64)" gpu_tests attn-tests-m64 90 "FullyQualifiedName~DecodeAttentionGpu"
grep -E "^failed" -A8 "$OUT/attn-tests-m64.log" | head -20
decode_run b1-main "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512
# m64 also with the last-block merge (AttentionMerge: 36 partials a head at 547 keys instead of 140); decode_run
# passes --fusions None, so the bench is called directly.
echo "== decode b1-m64 (None, AttentionMerge)"
SLOTHSHARP_NATIVE_PATH="$(lib m64)" timeout 150 dotnet "$bench" --suite decode --prefill 0 --fusions None,AttentionMerge --no-plain \
    --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512 --results "$OUT/b1-m64" > "$OUT/b1-m64.log" 2>&1; echo "exit $?"
grep -E "batch" "$OUT/b1-m64.log" | grep -v "memory held"; snap
gpu_tests wide-tests 170 "$tile_gemv_filter|FullyQualifiedName~DecodeWideNf4Gemm"
grep -E "^failed" -A8 "$OUT/wide-tests.log" | head -40
decode_run wide-mma "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64,16 --steps 512
