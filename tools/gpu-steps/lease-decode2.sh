#!/usr/bin/env bash
# Issue 25, second pass: the engine's and NF4 GEMV's GPU tests, the decode benchmark, and a short ncu summary of batch 1.
set -uo pipefail
OUT="${1:?usage: lease-decode2.sh OUTDIR}"
tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
bench="$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll"
echo "== GPU tests: decoding engine, NF4 GEMV, sampler"
timeout 150 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~TokenSampler)" \
    > "$OUT/tests-decode-gpu.log" 2>&1; echo "exit $?"
grep -E "^\s*(total|failed|succeeded|skipped):" "$OUT/tests-decode-gpu.log"; grep -E "^failed " "$OUT/tests-decode-gpu.log" | head
echo "== decode benchmark"
timeout 150 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -vE "^\s*$" "$OUT/decode-bench.log" | tail -12
echo "== ncu, batch 1"
timeout 150 ncu --clock-control none --target-processes all --launch-count 700 \
    -k 'regex:(attention_|bias_add|dense_gemv|embed_|gated_act|increment|logits_finish|nf4_gemv|qk_prep|residual_norm)' \
    --metrics gpu__time_duration.sum --csv dotnet "$bench" --suite decode --presets llama-3.2-1b --batches 1 --steps 2 --prefill 0 \
    > "$OUT/ncu.csv" 2> "$OUT/ncu.err"; echo "exit $?"
