#!/usr/bin/env bash
# Round 17, call 4 (branch h-attn-vec = main + the decode attention's 16-byte K/V loads + dense copies stacked into
# fused q/k/v and gate/up projections), issue 25, each step snapped:
# - GPU tests of the decoding engine, its attention and the NF4 GEMV (widen8 is shared with it);
# - A (this tree) against B (main's native tree, carried as gpu-b-native/, built while the tests run): Qwen3-1.7B and
#   Llama-3.2-1B at batch 64 from dense copies (target 20,000 tokens/s; round 16 on an H100: 17,598 and 29,632), then
#   batch 1 (512 tokens; target 1,000);
# - transformers' eager generation on the same shapes (the anchor) if time is left. (memcheck of the attention's
#   16-byte loads ran in call 2: 0 errors; the stacked path adds no kernel.)
set -uo pipefail
OUT="${1:?usage: lease-r17c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
start_main_build
gpu_tests tests-gpu 240 "FullyQualifiedName~Inference|FullyQualifiedName~Nf4Gemv"
wait "$bpid"; echo "B build: exit $?"; tail -2 "$OUT/build-b.log"
# Each class alone is in this tree's bench (B's managed side is the same): A/B of the step, then A's breakdown.
decode_run decode64-A "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 256 --dequantized
[ -f "$libB" ] && decode_run decode64-B "$libB" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 256 --dequantized
decode_run decode1-A "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1
[ -f "$libB" ] && decode_run decode1-B "$libB" --presets llama-3.2-1b,qwen3-1.7b --batches 1
decode_run only64-A "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 64 --steps 128 --dequantized --only each
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
for preset in qwen3-1.7b llama-3.2-1b; do
    dotnet "$sloth" make-checkpoint --preset "$preset" --seed 1 --out "/tmp/anchor-$preset" > /dev/null 2>&1 || echo "make-checkpoint $preset failed"
    PYTHONUNBUFFERED=1 timeout 100 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes eager --batches 64,1 --new 256 \
        >> "$OUT/hf-decode.log" 2>&1; echo "hf $preset exit $?"; grep HFANCHOR "$OUT/hf-decode.log" | tail -3; snap
done
