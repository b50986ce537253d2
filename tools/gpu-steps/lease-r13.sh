#!/usr/bin/env bash
# Round 13, one call (branch h-round13): the NF4 GEMV's activations staged in shared memory by column chunk
# (ChunkedX, float32) with paired rounding, and the attention combine with 16 partials in flight (round 12 call 1: same
# bits, memcheck clean, not yet timed against its base). Two libraries in one lease: A = this tree, B = main's native
# tree (carried as gpu-b-native/), built while A's tests run. In order of need, each step packed as it ends (a call cut
# short keeps the steps before): GPU tests; decode at batch 1, 4, 8 on A and B; memcheck on A; each class alone at
# batch 1 on A and B; the SASS of the batch-1 gated GEMV (for the next round's instruction count). About 5 minutes.
set -uo pipefail
OUT="${1:?usage: lease-r13.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
libA="$SLOTHSHARP_NATIVE_PATH"
rm -rf /tmp/nb && cp -r gpu-b-native /tmp/nb
build_native_variant /tmp/nb /tmp/b-install > "$OUT/build-b.log" 2>&1 &
bpid=$!
echo "== GPU tests (A): NF4 GEMV, engine, fusions, attention"
gpu_tests tests-gpu 170 "FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttention"
wait $bpid; echo "B build exit $?"
libB=/tmp/b-install/runtimes/linux-x64/native/libslothsharp.so
decode() {  # variant library
    echo "== decode ($1): batch 1, 4, 8"
    SLOTHSHARP_NATIVE_PATH="$2" timeout 100 dotnet "$bench" --suite decode --presets llama-3.2-1b,qwen3-1.7b --prefill 0 --steps 256 \
        --batches 1,4,8 --fusions None --no-plain --results "$OUT/decode-$1" > "$OUT/decode-$1.log" 2>&1; echo "exit $?"
    grep -E "batch" "$OUT/decode-$1.log" | grep -v "memory held"; snap
}
only() {  # variant library
    echo "== each class alone ($1), Llama-3.2-1B batch 1"
    SLOTHSHARP_NATIVE_PATH="$2" timeout 80 dotnet "$bench" --suite decode --presets llama-3.2-1b --prefill 0 --steps 256 --batches 1 \
        --fusions None --no-plain --only each --results "$OUT/only-$1" > "$OUT/only-$1.log" 2>&1; echo "exit $?"; grep -E "ONLY" "$OUT/only-$1.log"; snap
}
decode A "$libA"; decode B "$libB"
echo "== compute-sanitizer memcheck (A): NF4 GEMV, attention"
memcheck sanitizer 100 "FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttentionGpu"
only A "$libA"; only B "$libB"
echo "== SASS of the batch-1 bf16 gated GEMV (A and B)"
cuobjdump -sass "$libA" 2>/dev/null | awk '/Function : /{f = /nf4_gemv_gated_kernelILi2ELi1ELi1ELi1E/} f' > "$OUT/sass-gated-b1-chunked.txt"
cuobjdump -sass "$libB" 2>/dev/null | awk '/Function : /{f = /nf4_gemv_gated_kernelILi2ELi1ELi1ELb0E/} f' > "$OUT/sass-gated-b1-main.txt"
wc -l "$OUT"/sass-*.txt; snap
