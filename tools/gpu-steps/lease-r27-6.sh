#!/usr/bin/env bash
# Round 27: lease-r27-5's compute_75 attention tests ran out of their 200 s (PTX JIT beside three variant builds);
# on the warm machine (its JIT cache filled): the masked-values tests alone, then the attention and persistent tests.
set -uo pipefail
OUT="${1:?usage: lease-r27-6.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
sm75_tests attn-persistent-sm75 95 "FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodePersistent"
