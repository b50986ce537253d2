#!/usr/bin/env bash
# Round 15, fourth call (branch h-round15): the gated activation kernels on 16-byte vectors (round 15's third call:
# the packed forward 256 us, backward 317 us per Phi-4-mini layer at 8 x 1024 tokens, ~1.6 TB/s). Their GPU tests and
# memcheck; the QLoRA step of Phi-4-mini (fused, fused-recompute), Llama-3.2-1B and Qwen3-1.7B (fused). ~4 minutes.
set -uo pipefail
OUT="${1:?usage: lease-r15d.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests-gpu 100 "FullyQualifiedName~SwiGlu"
step_row phi-4-mini fused-recompute
step_row phi-4-mini fused
memcheck sanitizer 80 "FullyQualifiedName~SwiGlu"
step_row 1b fused
step_row qwen3-1.7b fused
