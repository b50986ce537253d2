#!/usr/bin/env bash
# Issues 23 and 24 in one short lease: packed vs padded QLoRA steps (bench --suite packing), tokenizer speed beside
# Hugging Face tokenizers on the same cores, `sloth export` speed (CPU cores), and the GPU tests of the sampler, batched
# generation and the chat client. Each part has its own time limit. Run through gpu-run's extra-step hook.
set -uo pipefail
OUT="${1:?usage: lease-data.sh OUTDIR}"
tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
echo "== GPU tests: sampler, batched generation, chat client"
timeout 90 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~TokenSampler|FullyQualifiedName~BatchGeneration|FullyQualifiedName~Chat)" \
    > "$OUT/tests-gpu-generation.log" 2>&1; echo "exit $?"
grep -E "^\s*(total|failed|succeeded|skipped):" "$OUT/tests-gpu-generation.log"
echo "== packing"
timeout 170 dotnet "$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll" --suite packing --results "$OUT" > "$OUT/packing.log" 2>&1; echo "exit $?"
tail -15 "$OUT/packing.log"
echo "== tokenizer speed"
timeout 100 bash tools/gpu-steps/tokenizer-speed.sh "$OUT" > /dev/null 2>&1; echo "exit $?"; cat "$OUT/tokenizer-speed.txt"
echo "== export speed"
timeout 130 bash tools/gpu-steps/export-speed.sh "$OUT" > /dev/null 2>&1; echo "exit $?"; cat "$OUT/export-speed.txt"
