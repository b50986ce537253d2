#!/usr/bin/env bash
# Round 14, first call (branch h-round14, never built by nvcc): the NF4 GEMV's table lookups by byte permute (the
# entry's address is the table's 256-byte aligned address with its low byte replaced by 4 × nibble: 1.5 instructions
# per weight instead of shift, mask and base add) and two weights rounded by one packed conversion; same bits.
# Round 12's SASS of main's batch-1 gated kernel: about 9 instructions per weight. Two libraries in one lease: A = this
# tree, B = main's native tree (carry it as gpu-b-native/: `git archive main native | tar -x` and rename), built while
# A's tests run. Run with SLOTHSHARP_SM75=1 (the compute_75 build: byte permute and 32-bit shared loads on the T4 path).
# In order of need, each step packed as it ends: GPU tests; compute_75 tests; decode at batch 1, 4, 8 (512 new tokens)
# on A and B; memcheck and racecheck on A; each class alone on A and B; the SASS of A's gated kernel. About 8 minutes.
set -uo pipefail
OUT="${1:?usage: lease-r14.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
libA="$SLOTHSHARP_NATIVE_PATH"
rm -rf /tmp/nb && cp -r gpu-b-native /tmp/nb
build_native_variant /tmp/nb /tmp/b-install > "$OUT/build-b.log" 2>&1 &
bpid=$!
echo "== GPU tests (A): NF4 GEMV, engine, fusions, attention"
gpu_tests tests-gpu 170 "FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttention"
echo "== compute_75 build: NF4 GEMV, attention, engine, fusions, launch modes"
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 200 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeFusionGpu|FullyQualifiedName~DecodeLaunchMode)" \
    > "$OUT/tests-sm75.log" 2>&1; echo "exit $?"; summary "$OUT/tests-sm75.log"; snap
wait $bpid; echo "B build exit $?"
libB=/tmp/b-install/runtimes/linux-x64/native/libslothsharp.so
decode() {  # variant library
    echo "== decode ($1): batch 1, 4, 8"
    SLOTHSHARP_NATIVE_PATH="$2" timeout 120 dotnet "$bench" --suite decode --presets llama-3.2-1b,qwen3-1.7b --prefill 0 \
        --batches 1,4,8 --fusions None --no-plain --results "$OUT/decode-$1" > "$OUT/decode-$1.log" 2>&1; echo "exit $?"
    grep -E "batch" "$OUT/decode-$1.log" | grep -v "memory held"; snap
}
only() {  # variant library
    echo "== each class alone ($1), Llama-3.2-1B batch 1"
    SLOTHSHARP_NATIVE_PATH="$2" timeout 80 dotnet "$bench" --suite decode --presets llama-3.2-1b --prefill 0 --steps 256 --batches 1 \
        --fusions None --no-plain --only each --results "$OUT/only-$1" > "$OUT/only-$1.log" 2>&1; echo "exit $?"; grep -E "ONLY" "$OUT/only-$1.log"; snap
}
decode A "$libA"; decode B "$libB"
memcheck sanitizer 100 "FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttentionGpu"
timeout 90 compute-sanitizer --tool racecheck --target-processes all --error-exitcode 97 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~Nf4GemvTests|FullyQualifiedName~DecodeAttentionGpu)" > "$OUT/racecheck.log" 2>&1
echo "racecheck: exit $?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$OUT/racecheck.log" | tail -2; summary "$OUT/racecheck.log"; snap
only A "$libA"; only B "$libB"
cuobjdump -sass "$libA" 2>/dev/null | awk '/Function : /{f = /nf4_gemv_gated_kernelILi2ELi1ELi1ELb0E/} f' > "$OUT/sass-gated-b1.txt"
wc -l "$OUT/sass-gated-b1.txt"; snap
