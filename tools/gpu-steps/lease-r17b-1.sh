#!/usr/bin/env bash
# Round 17, call 1 (branch h-round17b = h-round17 + h-attn-vec), in the order the open targets need it, each step
# snapped so a call cut at its limit still returns what ran:
# - issue 25: the decode attention's 16-byte K/V loads three keys ahead (h-attn-vec), A (this tree) against B (main's
#   native tree, carried as gpu-b-native/, built in the background while the tests run): Qwen3-1.7B and Llama-3.2-1B
#   at batch 64 with dense weights (round 16: 17,598 and 29,632 tokens/s; target 20,000) and at batch 1 (512 tokens);
# - issue 22: the one-pass soft-capped attention after its cp.async loads (one Gemma-2-2B layer; round 16: 6.72 ms
#   against the blocks' 3.84), the Gemma-2-2B step with it, with the LoRA delta folded, and with both;
# - the GPU tests of all of it.
set -uo pipefail
OUT="${1:?usage: lease-r17b-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
start_main_build
gpu_tests tests-gpu 240 "FullyQualifiedName~DecodeAttention|FullyQualifiedName~DecodeKernel|FullyQualifiedName~Softcap|FullyQualifiedName~FoldLoraDelta|FullyQualifiedName~Nf4LoraLinear"
softcap_row flash
wait "$bpid"; echo "B build: exit $?"; tail -3 "$OUT/build-b.log"
decode_run decode64-A "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 256 --dequantized
[ -f "$libB" ] && decode_run decode64-B "$libB" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 256 --dequantized
decode_run decode1-A "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1
[ -f "$libB" ] && decode_run decode1-B "$libB" --presets llama-3.2-1b,qwen3-1.7b --batches 1
step_row gemma-2-2b fused-softcap-flash
step_row gemma-2-2b fused-fold-lora
step_row gemma-2-2b fused-softcap-flash-fold
