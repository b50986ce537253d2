#!/usr/bin/env bash
# Round 19, call 3 (issue 25): the decode attention kernel asks for 106 registers a thread, so 4 blocks of 128 threads
# fit an SM (25% occupancy, call 2's Nsight Compute). Variants with __launch_bounds__(128, 8): chunk 128 (main's) and 512.
set -uo pipefail
OUT="${1:?usage: lease-r19d.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
variant() {  # NAME CHUNK
    native_variant "$1" src/decode_kernels.h "constexpr int64_t kDecodeMinChunk = 128;" "constexpr int64_t kDecodeMinChunk = $2;" \
        cuda/decode_attention_kernels.cuh "__global__ void __launch_bounds__(kThreads) attention_kernel" \
        "__global__ void __launch_bounds__(kThreads, 8) attention_kernel"
    cmake -S "/tmp/nv$1" -B "/tmp/nv$1-build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLOTH_CUDA_ARCHITECTURES=90 \
        -DCMAKE_INSTALL_PREFIX="/tmp/nv$1-install" > "$OUT/build-$1.log" 2>&1
}
variant lb8 128; variant c512lb8 512
( cmake --build /tmp/nvlb8-build -j 8 && cmake --install /tmp/nvlb8-build ) >> "$OUT/build-lb8.log" 2>&1 &
p1=$!
( cmake --build /tmp/nvc512lb8-build -j 8 && cmake --install /tmp/nvc512lb8-build ) >> "$OUT/build-c512lb8.log" 2>&1 &
p2=$!
wait $p1; echo "lb8 build $?"; wait $p2; echo "c512lb8 build $?"
grep -h "spill\|ptxas" "$OUT"/build-*.log | head -5
for v in lb8 c512lb8; do
    decode_run "attn-$v" "/tmp/nv$v-install/runtimes/linux-x64/native/libslothsharp.so" --dequantized --presets qwen3-1.7b \
        --batches 64 --steps 512 --only Attention --gemm-tuning None
done
