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
start_main_build
gpu_tests tests-gpu 170 "FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttention"
sm75_tests tests-sm75 200 "FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeFusionGpu|FullyQualifiedName~DecodeLaunchMode"
wait $bpid; echo "B build exit $?"
for v in A B; do
    lib=$libA; [ $v = B ] && lib=$libB
    decode_run "decode-$v" "$lib" --presets llama-3.2-1b,qwen3-1.7b --batches 1,4,8
done
memcheck sanitizer 100 "FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeAttentionGpu"
racecheck racecheck 90 "FullyQualifiedName~Nf4GemvTests|FullyQualifiedName~DecodeAttentionGpu"
for v in A B; do
    lib=$libA; [ $v = B ] && lib=$libB
    decode_run "only-$v" "$lib" --presets llama-3.2-1b --batches 1 --steps 256 --only each
done
cuobjdump -sass "$libA" 2>/dev/null | awk '/Function : /{f = /nf4_gemv_gated_kernelILi2ELi1ELi1ELb0E/} f' > "$OUT/sass-gated-b1.txt"
wc -l "$OUT/sass-gated-b1.txt"; snap
