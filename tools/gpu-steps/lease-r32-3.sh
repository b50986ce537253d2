#!/usr/bin/env bash
# Round 32, call 3 (the same warm machine, the tree switched to ALL, SLOTHSHARP_SM75=0): (1) compute-sanitizer
# racecheck over the engine, persistent and attention GPU tests on ALL (the fused preparation's shared tables and
# per-warp buffers, the staged x); (2) Qwen3-1.7B with each kernel class alone (`--only each`) at batch 1 and at
# batch 64 on ALL: where the batch-64 step's 3.7 ms go (round 30 had no per-class split there); (3) Nsight Compute over
# one layer's four wide NF4 GEMM launches at batch 64 (occupancy, stalls, DRAM throughput).
set -uo pipefail
OUT="${1:?usage: lease-r32-3.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
decode_filter="FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeAttentionGpu"
racecheck racecheck 200 "($decode_filter)&FullyQualifiedName!~TwoLaunchesAStep"
decode_run each-b1 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 1 --steps 256 --only each
decode_run each-b64 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 64 --steps 256 --only each
ncu_wide b64 "$SLOTHSHARP_NATIVE_PATH" 64
rm -f "$OUT"/wide-*.ncu-rep; snap
