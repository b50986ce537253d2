#!/usr/bin/env bash
# Round 26, call 2, branch r26 (main + the tensor-core attention walk at every batch, 64-key chunks at small batches):
# (1) the decode GPU tests (attention; tile GEMVs, engine, persistent step, fusions, launch modes), the persistent
# kernel's registers; (2) SlothSharp's decode rows, batch 1 (NF4) and batch 64 (NF4, dense copies), 512 new tokens;
# (3) transformers' Llama-3.2-1B anchors in the same lease (eager at batch 64 and 1 with 128 new tokens; static cache +
# torch.compile at batch 1 with 512, warmed up on the timed run's shapes).
set -uo pipefail
OUT="${1:?usage: lease-r26-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
gpu_tests decode-tests 170 "FullyQualifiedName~DecodeAttentionGpu|$tile_gemv_filter"
grep -E "^failed" -A8 "$OUT/decode-tests.log" | head -40
cuobjdump -res-usage "$SLOTHSHARP_NATIVE_PATH" 2>/dev/null | grep -A1 -E "step_kernel|attention_kernel" > "$OUT/res-usage.txt"
grep -oE "REG:[0-9]+|STACK:[0-9]+|LOCAL:[0-9]+" "$OUT/res-usage.txt" | paste - - - | sort | uniq -c
decode_run ours-b1 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --steps 512
preset=llama-3.2-1b
dotnet "$sloth" make-checkpoint --preset "$preset" --seed 1 --out "/tmp/anchor-$preset" > /dev/null 2>&1 || echo "make-checkpoint $preset failed"
PYTHONUNBUFFERED=1 timeout 60 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes eager --batches 64,1 --new 128 \
    >> "$OUT/hf-decode.log" 2>&1; echo "eager $preset exit $?"
PYTHONUNBUFFERED=1 timeout 150 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes static --batches 1 --new 512 \
    --no-prefill >> "$OUT/hf-decode.log" 2>&1; echo "static $preset exit $?"
grep HFANCHOR "$OUT/hf-decode.log"; grep -iE "Error" "$OUT/hf-decode.log" | head -5; snap
decode_run ours-b64-dense "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --dequantized --steps 512
decode_run ours-b64-nf4 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
