#!/usr/bin/env bash
# Round 18, call 5 (main after the merge of h-persistent: the persistent step without its L2 prefetch): the persistent
# step's GPU tests on that tree, then compute-sanitizer memcheck and racecheck over the one that runs a persistent step
# of a Qwen3 shape (head_dim 128, q/k norms) next to a batch-2 launch step.
set -uo pipefail
OUT="${1:?usage: lease-r18e.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests persistent 120 "FullyQualifiedName~DecodePersistent"
memcheck memcheck-persistent 150 "FullyQualifiedName~TwoLaunchesAStep"
racecheck racecheck-persistent 100 "FullyQualifiedName~TwoLaunchesAStep"
