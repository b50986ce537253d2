#!/usr/bin/env bash
# Prepared in round 26 for the next lease (issue 25), on main, with SLOTHSHARP_SM75=1 in the gpu-run command (the
# compute_75 build): (0) compute-sanitizer memcheck over the attention tests and racecheck over the tensor-core
# walk's (round 26 merged it without a sanitizer run); (1) the decode GPU tests against the compute_75 build (the T4
# code path, JIT here: the sub-warp walk in 16-key chunks, the persistent step's sub-warp phase); (2) transformers'
# Qwen3-1.7B anchors (eager at batch 64 and 1 with 128 new tokens; static cache + torch.compile at batch 1 with 512),
# with SlothSharp's Qwen3-1.7B rows in the same lease.
set -uo pipefail
OUT="${1:?usage: lease-r27-2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
memcheck attn-memcheck 150 "FullyQualifiedName~DecodeAttentionGpu"
racecheck attn-racecheck 150 "FullyQualifiedName~TensorCoreWalk"
sm75_tests decode-tests-sm75 240 "FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeEngineGpu"
grep -E "^failed" -A8 "$OUT/decode-tests-sm75.log" | head -30
decode_run ours-qwen3 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 1 --steps 512
decode_run ours-qwen3-b64 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 64 --dequantized --steps 512
hf_anchor qwen3-1.7b
