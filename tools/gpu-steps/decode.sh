#!/usr/bin/env bash
# Issue 25 (native decoding engine) on the GPU: the engine's CUDA tests (bf16 parity against CausalLM.Forward for
# Llama and every golden family, the cuBLASLt path past 8 rows, one graph capture per batch size) and its CPU tests,
# then the decode benchmark (tokens/s at batch 1 and 64, 2,048-token prefill). Run through gpu-run's extra-step hook:
#   SLOTHSHARP_TESTS=0 SLOTHSHARP_SANITIZE=0 SLOTHSHARP_BENCH=0 SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/decode.sh ./build.sh gpu-run $OUT
# Writes $OUT/decode-tests.log and $OUT/decode-bench.log (and decode.txt).
set -uo pipefail
OUT="${1:?usage: decode.sh OUTDIR}"
timeout 900 dotnet "$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll" --no-progress \
    --filter "FullyQualifiedName~SlothSharp.Tests.Inference" > "$OUT/decode-tests.log" 2>&1
rc=$?
grep -E "^(failed|  total|  failed|  succeeded|  skipped)" "$OUT/decode-tests.log" | tail -40
timeout 1200 dotnet "$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1 || rc=1
cat "$OUT/decode-bench.log" | tail -20
exit $rc
