#!/usr/bin/env bash
# Issue 25 checks on the new kernels: the compute_75 (T4) build's engine and NF4 GEMV GPU tests, and compute-sanitizer
# memcheck on the decode kernels' and engine's GPU tests.
set -uo pipefail
OUT="${1:?usage: lease-verify.sh OUTDIR}"
tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
lib75="$PWD/build/sm75-install/runtimes/linux-x64/native/libslothsharp.so"
echo "== compute_75 build: decoding engine, NF4 GEMV"
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 75 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv)" > "$OUT/tests-decode-sm75.log" 2>&1
echo "exit $?"; grep -E "^\s*(total|failed|succeeded|skipped):" "$OUT/tests-decode-sm75.log"; grep -E "^failed " "$OUT/tests-decode-sm75.log" | head
echo "== compute-sanitizer memcheck: decode kernels and engine"
timeout 100 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 97 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~DecodeKernel|TestCategory=Sanitize|FullyQualifiedName~Nf4GemvTests)" > "$OUT/sanitizer-decode.log" 2>&1
echo "exit $?"; grep -E "ERROR SUMMARY" "$OUT/sanitizer-decode.log" | tail -2; grep -E "^\s*(total|failed|succeeded|skipped):" "$OUT/sanitizer-decode.log"
