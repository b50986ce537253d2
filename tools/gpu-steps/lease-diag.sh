#!/usr/bin/env bash
# A short lease: tokenizer speed beside Hugging Face tokenizers (issue 23) and why the compute_75 run of the kernel
# tests skipped everything (the library it loads, its device count, then the tests with an absolute path).
set -uo pipefail
OUT="${1:?usage: lease-diag.sh OUTDIR}"
lib75="$PWD/build/sm75-install/runtimes/linux-x64/native/libslothsharp.so"
tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
echo "== compute_75 library"
ls -la "$lib75" || true
python3 - "$lib75" <<'PY'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.sloth_last_error.restype = ctypes.c_char_p
for fn in ("sloth_built_with_cuda", "sloth_cuda_device_count"):
    v = ctypes.c_int32(-1); st = getattr(lib, fn)(ctypes.byref(v))
    print(fn, "status", st, "value", v.value, (lib.sloth_last_error() or b"").decode())
PY
SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 timeout 90 dotnet "$tests" --no-progress \
    --filter "TestCategory=Gpu&(FullyQualifiedName~RmsNorm|FullyQualifiedName~SwiGlu|FullyQualifiedName~Rope|FullyQualifiedName~Nf4Gemv)" \
    > "$OUT/tests-sm75.log" 2>&1; echo "exit $?"
grep -E "^\s*(total|failed|succeeded|skipped):" "$OUT/tests-sm75.log"; grep -m3 -A3 "SetUp" "$OUT/tests-sm75.log"
echo "== tokenizer speed"
timeout 300 bash tools/gpu-steps/tokenizer-speed.sh "$OUT"
