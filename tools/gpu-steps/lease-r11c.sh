#!/usr/bin/env bash
# Round 11, third call (branch h-attn-block after the second call: the attention's in-block merge dropped, it was
# slower at batch 64; q/k/v stacked into one GEMM on the GEMM path kept). The GPU tests, then an A/B in one lease of
# the large-batch attention chunk: A = this tree (kDecodeMinChunk 64), B = the same native code with 128 keys per
# block past batch 4 (fewer, longer blocks: the walk's per-block costs, reading the length and q, writing partials,
# spread over twice the keys), built here into its own folder while the tests run.
set -uo pipefail
OUT="${1:?usage: lease-r11c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
libA="$SLOTHSHARP_NATIVE_PATH"
rm -rf /tmp/native-b && cp -r native /tmp/native-b
sed -i 's/constexpr int64_t kDecodeMinChunk = 64;/constexpr int64_t kDecodeMinChunk = 128;/' /tmp/native-b/src/decode_kernels.h
grep -n "kDecodeMinChunk =" /tmp/native-b/src/decode_kernels.h
( cmake -S /tmp/native-b -B /tmp/build-b -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLOTH_CUDA_ARCHITECTURES=90 \
    -DCMAKE_INSTALL_PREFIX=/tmp/b-install && cmake --build /tmp/build-b -j 12 && cmake --install /tmp/build-b ) > "$OUT/build-b.log" 2>&1 &
bpid=$!
echo "== GPU tests (A): engine, fusions, attention, NF4 GEMV"
timeout 150 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
wait $bpid; echo "B build exit $?"; tail -2 "$OUT/build-b.log"
libB=/tmp/b-install/runtimes/linux-x64/native/libslothsharp.so
echo "== GPU tests (B): attention and engine"
SLOTHSHARP_NATIVE_PATH="$libB" timeout 100 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeAttention|FullyQualifiedName~DecodeEngineGpu)" > "$OUT/tests-b.log" 2>&1
echo "exit $?"; summary "$OUT/tests-b.log"; snap
for v in A B; do
    lib=$libA; [ $v = B ] && lib=$libB
    echo "== decode ($v): both models, batch 1 and 64"
    SLOTHSHARP_NATIVE_PATH="$lib" timeout 120 dotnet "$bench" --suite decode --presets llama-3.2-1b,qwen3-1.7b --prefill 0 --batches 1,64 \
        --fusions None --results "$OUT/decode-$v" > "$OUT/decode-$v.log" 2>&1; echo "exit $?"
    grep -E "batch" "$OUT/decode-$v.log" | grep -v "memory held"; snap
    echo "== attention alone ($v), Llama-3.2-1B batch 64"
    SLOTHSHARP_NATIVE_PATH="$lib" timeout 60 dotnet "$bench" --suite decode --presets llama-3.2-1b --prefill 0 --batches 64 \
        --fusions None --only Attention,Qkv --results "$OUT/only-$v" > "$OUT/only-$v.log" 2>&1; echo "exit $?"
    grep -E "ONLY" "$OUT/only-$v.log"; snap
done
echo "== Nsight Compute: the NF4 GEMV kernels of one layer (q/k/v, o, gate/up, down) at batch 1 and 8 (A)"
for b in 1 8; do
    timeout 120 ncu --target-processes all -k regex:nf4_gemv --launch-count 4 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        dotnet "$bench" --suite decode --presets llama-3.2-1b --batches $b --fusions None --steps 2 --prefill 0 --results "$OUT/ncu-tmp" \
        > "$OUT/ncu-gemv-b$b.txt" 2> "$OUT/ncu-gemv-b$b.err"; echo "exit $?"
    grep -E "nf4_gemv|Duration|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Issue Slots Busy|Stall" "$OUT/ncu-gemv-b$b.txt" | head -60
    snap
done
