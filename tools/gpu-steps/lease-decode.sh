#!/usr/bin/env bash
# Issue 25 in one lease: the decoding engine's tests on the GPU (bf16 parity with CausalLM.Forward for every family,
# graph captures, the cuBLASLt path), the decode benchmark (batch 1 and 64, 2,048-token prefill), and transformers'
# generation on the same shapes and weights (bf16; eager and, with HF_MODES=eager,static, the static cache compiled),
# optionally the compute_75 build's and compute-sanitizer's runs of the engine tests (EXTRA_CHECKS=1).
set -uo pipefail
OUT="${1:?usage: lease-decode.sh OUTDIR}"
tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
bench="$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
lib75="$PWD/build/sm75-install/runtimes/linux-x64/native/libslothsharp.so"
summary() { grep -E "^\s*(total|failed|succeeded|skipped):" "$1"; grep -E "^failed " "$1" | head -20; }
echo "== GPU tests: decoding engine, sampler"
timeout "${TESTS_S:-150}" dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~TokenSampler)" \
    > "$OUT/tests-decode-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-decode-gpu.log"
echo "== decode benchmark"
timeout "${BENCH_S:-200}" dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
tail -25 "$OUT/decode-bench.log"
echo "== transformers anchors"
for preset in llama-3.2-1b qwen3-1.7b; do
    dotnet "$sloth" make-checkpoint --preset "$preset" --seed 1 --out "/tmp/anchor-$preset" > /dev/null 2>&1 || echo "make-checkpoint $preset failed"
    PYTHONUNBUFFERED=1 timeout "${HF_S:-100}" python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes "${HF_MODES:-eager}" \
        --batches "${HF_BATCHES:-1,64}" >> "$OUT/hf-decode.log" 2>&1; echo "exit $?"
    rm -rf "/tmp/anchor-$preset"
done
grep HFANCHOR "$OUT/hf-decode.log"; grep -iE "error|Traceback" "$OUT/hf-decode.log" | head -5
if [ "${EXTRA_CHECKS:-0}" = 1 ]; then
    echo "== compute_75 build: decoding engine GPU tests"
    SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 120 dotnet "$tests" --no-progress \
        --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv)" > "$OUT/tests-decode-sm75.log" 2>&1
    echo "exit $?"; summary "$OUT/tests-decode-sm75.log"
    echo "== compute-sanitizer memcheck: decoding engine GPU tests"
    timeout 150 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 dotnet "$tests" --no-progress \
        --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeKernel|FullyQualifiedName~DecodeEngineGpu)" > "$OUT/sanitizer-decode.log" 2>&1
    echo "exit $?"; grep -E "ERROR SUMMARY" "$OUT/sanitizer-decode.log" | tail -2; summary "$OUT/sanitizer-decode.log"
fi
