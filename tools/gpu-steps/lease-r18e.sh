#!/usr/bin/env bash
# Round 18, call 5 (main after the merge of h-persistent: the persistent step without its L2 prefetch): the persistent
# step's GPU tests on that tree, then compute-sanitizer memcheck and racecheck over two of them (Qwen3 at head_dim 128
# and Gemma 2 at head_dim 64: q/k norms, soft-caps, windows, sandwich norms).
set -uo pipefail
OUT="${1:?usage: lease-r18e.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests persistent 120 "FullyQualifiedName~DecodePersistent"
one='FullyQualifiedName~DecodePersistentGpuTests.SameBitsAsTheLaunches(%22qwen3%22,128,4,2)|FullyQualifiedName~DecodePersistentGpuTests.SameBitsAsTheLaunches(%22gemma2%22,64,8,1)'
memcheck memcheck-persistent 150 "$one"
racecheck racecheck-persistent 100 "FullyQualifiedName~DecodePersistentGpuTests.SameBitsAsTheLaunches(%22qwen3%22,128,4,2)"
