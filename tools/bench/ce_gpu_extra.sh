#!/usr/bin/env bash
# Issue 15 extra GPU steps, for SLOTHSHARP_GPU_EXTRA (tools/gpu.sh runs it last, from the repository root, with
# SLOTHSHARP_APPS, SLOTHSHARP_NATIVE_PATH, LD_LIBRARY_PATH and OUTDIR set):
#   1. the loss tests on the GPU (fused variants, hand-off, fp16, ignore-heavy, None, TokenLogProbs/GRPO),
#   2. the Python anchors (naive PyTorch, Cut Cross-Entropy, Liger, torch replicas) and the chunk-loop probe.
# CE_EXTRA_TESTS=0 / CE_EXTRA_ANCHORS=0 skip a step; CE_ANCHOR_ARGS adds arguments to ce_anchors.py.
set -uo pipefail
out="${OUTDIR:-${1:?usage: ce_gpu_extra.sh OUTDIR}}"
rc=0
if [ "${CE_EXTRA_TESTS:-1}" = 1 ]; then
    echo "== loss tests on the GPU"
    start=$(date +%s)
    dotnet "$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll" --no-progress \
        --filter "FullyQualifiedName~SlothSharp.Tests.FusedVariantTests|FullyQualifiedName~SlothSharp.Tests.LossTests|FullyQualifiedName~SlothSharp.Tests.ChunkLossTests|FullyQualifiedName~SlothSharp.Tests.GrpoTests|FullyQualifiedName~SlothSharp.Tests.LossModuleTests|FullyQualifiedName~SlothSharp.Tests.ChunkOptionsTests|FullyQualifiedName~SlothSharp.Tests.AutogradBaseTests|FullyQualifiedName~SlothSharp.Tests.BackwardErrorTests" \
        > "$out/ce-loss-tests.log" 2>&1 || rc=1
    grep -E "total:|failed:|succeeded:|skipped:" "$out/ce-loss-tests.log" | tail -4
    grep -E "^failed " "$out/ce-loss-tests.log" | head -20
    echo "loss tests: $(( $(date +%s) - start )) s"
fi
if [ "${CE_EXTRA_ANCHORS:-1}" = 1 ]; then
    echo "== Python anchors + chunk-loop probe"
    start=$(date +%s)
    # shellcheck disable=SC2086  # CE_ANCHOR_ARGS is a list of words
    PYTHONPATH=".anchors/cce:.anchors/liger/src${PYTHONPATH:+:$PYTHONPATH}" python3 tools/bench/ce_anchors.py \
        --out "$out/ce-anchors" --probe ${CE_ANCHOR_ARGS:-} 2>&1 | tee "$out/ce-anchors.log" | grep -vE '^\{' || rc=1
    echo "anchors: $(( $(date +%s) - start )) s"
fi
exit $rc
