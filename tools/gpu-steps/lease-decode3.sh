#!/usr/bin/env bash
# Issue 25, third pass: engine/GEMV GPU tests, the decode benchmark, transformers' static cache + torch.compile anchors.
set -uo pipefail
OUT="${1:?usage: lease-decode3.sh OUTDIR}"
tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
bench="$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
echo "== GPU tests: decoding engine, NF4 GEMV"
timeout 150 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv)" \
    > "$OUT/tests-decode-gpu.log" 2>&1; echo "exit $?"
grep -E "^\s*(total|failed|succeeded|skipped):" "$OUT/tests-decode-gpu.log"; grep -E "^failed " "$OUT/tests-decode-gpu.log" | head
echo "== decode benchmark"
timeout 150 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -vE "^\s*$" "$OUT/decode-bench.log" | tail -12
echo "== transformers, static cache + torch.compile, batch 1"
for preset in llama-3.2-1b qwen3-1.7b; do
    dotnet "$sloth" make-checkpoint --preset "$preset" --seed 1 --out "/tmp/anchor-$preset" > /dev/null 2>&1 || echo "make-checkpoint $preset failed"
    PYTHONUNBUFFERED=1 timeout 110 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes static --batches 1 \
        >> "$OUT/hf-decode-static.log" 2>&1; echo "exit $?"
    rm -rf "/tmp/anchor-$preset"
done
grep HFANCHOR "$OUT/hf-decode-static.log"; grep -iE "Error" "$OUT/hf-decode-static.log" | head -5
