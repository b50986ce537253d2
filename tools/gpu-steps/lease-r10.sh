#!/usr/bin/env bash
# Round 10, first call (branch h-round9 with the fusion switches): is each fusion worth its launches? GPU tests of the
# engine with every fusion combination (same bits as none), then the decode benchmark timing none / Norm /
# AttentionMerge / All with programmatic launch and none with plain launches, in one lease (round 9 measured only
# All, against main in another lease: batch 1 23% slower, batch 64 6% faster). Then Gemma 2's soft-capped attention
# both ways (bench --suite softcap). The compute_75 build's
# tests need a call of their own (the PTX JIT of the decode kernels took more than 170 s in round 9).
set -uo pipefail
OUT="${1:?usage: lease-r10.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv -l 1 > "$OUT/clocks.csv" 2>&1 &
smi=$!
echo "== GPU tests: engine, fusions, launch modes, attention, NF4 GEMV, GGUF quantizers"
timeout 200 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&(FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv|FullyQualifiedName~Gguf)" \
    > "$OUT/tests-gpu.log" 2>&1; echo "exit $?"; summary "$OUT/tests-gpu.log"; snap
echo "== decode benchmark: fusions one by one, same lease"
timeout 150 dotnet "$bench" --suite decode --results "$OUT" > "$OUT/decode-bench.log" 2>&1; echo "exit $?"
grep -E "batch|prefill|memory" "$OUT/decode-bench.log"; snap
echo "== where a step's time goes: the step without each kernel class (DecodeEngine.SetOmittedParts; timing only)"
timeout 100 dotnet "$bench" --suite decode --presets llama-3.2-1b --prefill 0 --fusions None --omit each --results "$OUT/omit" \
    > "$OUT/decode-omit.log" 2>&1; echo "exit $?"; grep -E "batch" "$OUT/decode-omit.log"; snap
echo "== Gemma 2 soft-capped attention: eager vs blocks (issue 22: measure and choose)"
timeout 90 dotnet "$bench" --suite softcap --results "$OUT" > "$OUT/softcap.log" 2>&1; echo "exit $?"; grep -E "eager|blocks" "$OUT/softcap.log"
kill $smi 2>/dev/null; snap
