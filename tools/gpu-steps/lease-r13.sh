#!/usr/bin/env bash
# Round 13, one call (branch h-round13): the NF4 GEMV's activations staged in shared memory by column chunk
# (ChunkedX) with paired rounding, and the attention combine with 16 partials in flight (round 12 call 1: same bits,
# memcheck clean, not yet timed against its base). Three libraries in one lease:
#   A = this tree (ChunkedX in float32), C = this tree with kChunkedXFloat32 = false (x kept in its 16-bit dtype),
#   B = main's native tree (carried as gpu-b-native/), built while A's tests run.
# Decode at batch 1, 4, 8 on A, B, C; each class alone at batch 1 on A and B; memcheck on A; the SASS of the batch-1
# gated GEMV (for the next round's instruction count). About 8 minutes: run with timeout_s 600.
set -uo pipefail
OUT="${1:?usage: lease-r13.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
libA="$SLOTHSHARP_NATIVE_PATH"
rm -rf /tmp/nb /tmp/nc && cp -r gpu-b-native /tmp/nb && cp -r native /tmp/nc
sed -i 's/^constexpr bool kChunkedXFloat32 = true;/constexpr bool kChunkedXFloat32 = false;/' /tmp/nc/cuda/nf4_gemv_kernels.cuh
grep -n "^constexpr bool kChunkedXFloat32" /tmp/nc/cuda/nf4_gemv_kernels.cuh
( build_native_variant /tmp/nb /tmp/b-install > "$OUT/build-b.log" 2>&1; echo "B build exit $?" >> "$OUT/build-b.log"
  build_native_variant /tmp/nc /tmp/c-install > "$OUT/build-c.log" 2>&1; echo "C build exit $?" >> "$OUT/build-c.log" ) &
bpid=$!
echo "== GPU tests (A): NF4 GEMV, engine, fusions, attention"
gpu_tests tests-gpu 170 "FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttention"
wait $bpid; tail -1 "$OUT/build-b.log"; tail -1 "$OUT/build-c.log"
libB=/tmp/b-install/runtimes/linux-x64/native/libslothsharp.so
libC=/tmp/c-install/runtimes/linux-x64/native/libslothsharp.so
for v in A B C; do
    lib=$libA; [ $v = B ] && lib=$libB; [ $v = C ] && lib=$libC
    echo "== decode ($v): batch 1, 4, 8"
    SLOTHSHARP_NATIVE_PATH="$lib" timeout 100 dotnet "$bench" --suite decode --presets llama-3.2-1b,qwen3-1.7b --prefill 0 --steps 256 \
        --batches 1,4,8 --fusions None --results "$OUT/decode-$v" > "$OUT/decode-$v.log" 2>&1; echo "exit $?"
    grep -E "batch" "$OUT/decode-$v.log" | grep -v "memory held"; snap
done
for v in A B; do
    lib=$libA; [ $v = B ] && lib=$libB
    echo "== each class alone ($v), Llama-3.2-1B batch 1"
    SLOTHSHARP_NATIVE_PATH="$lib" timeout 80 dotnet "$bench" --suite decode --presets llama-3.2-1b --prefill 0 --steps 256 --batches 1 \
        --fusions None --only each --results "$OUT/only-$v" > "$OUT/only-$v.log" 2>&1; echo "exit $?"; grep -E "ONLY" "$OUT/only-$v.log"; snap
done
echo "== SASS of the batch-1 bf16 GEMV kernels (A)"
cuobjdump -sass "$libA" 2>/dev/null | awk '/Function : .*nf4_gemv_gated_kernelILi2ELi1ELi1ELi1E/{f=1} /Function : /{if (!/nf4_gemv_gated_kernelILi2ELi1ELi1ELi1E/) f=0} f' > "$OUT/sass-gated-b1-chunked.txt"
cuobjdump -sass "$libB" 2>/dev/null | awk '/Function : .*nf4_gemv_gated_kernelILi2ELi1ELi1ELb0E/{f=1} /Function : /{if (!/nf4_gemv_gated_kernelILi2ELi1ELi1ELb0E/) f=0} f' > "$OUT/sass-gated-b1-main.txt"
wc -l "$OUT"/sass-*.txt; snap
echo "== compute-sanitizer memcheck (A): NF4 GEMV, attention"
memcheck sanitizer 110 "FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttentionGpu"
