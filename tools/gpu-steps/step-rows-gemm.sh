#!/usr/bin/env bash
# Issue 15's GEMM change in the training step (issue 14's row): the 1B fused step, no checkpointing, with the LM-head
# loss's GEMMs through the tuned cuBLASLt GEMM (default) and through TorchSharp's matmul (SLOTHSHARP_CE_GEMM=torch),
# interleaved, one fresh process each (CE_STEP_ROWS pairs, default 2). Then, optionally (CE_IGNORE_SWEEP=1), the
# ce-sweep on the ignore_index-heavy problem with the variants in alternating order (does the order matter?).
# Run through gpu-run's extra-step hook:
#   SLOTHSHARP_TESTS=0 SLOTHSHARP_BENCH=0 SLOTHSHARP_GPU_EXTRA=tools/gpu-steps/step-rows-gemm.sh ./build.sh gpu-run $OUT
# Writes $OUT/step-rows-gemm.txt (and $OUT/ignore7/ with the sweep).
set -uo pipefail
OUT="${1:?usage: step-rows-gemm.sh OUTDIR}"
bench="$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll"
log="$OUT/step-rows-gemm.txt"
rc=0
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null
    echo "commit: $(cat "$SLOTHSHARP_APPS/../commit.txt" 2> /dev/null)"
    echo "command: SlothSharp.Bench --suite step-row --shape 1b --path fused --checkpointing 0 --device cuda, PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True, alternately with SLOTHSHARP_CE_GEMM unset (tuned cuBLASLt GEMM) and =torch"
} > "$log"
for i in $(seq 1 "${CE_STEP_ROWS:-2}"); do
    for gemm in tuned torch; do
        if [ "$gemm" = torch ]; then extra=(SLOTHSHARP_CE_GEMM=torch); else extra=(); fi
        line=$(env "${extra[@]}" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True dotnet "$bench" --suite step-row \
            --shape 1b --path fused --checkpointing 0 --device cuda 2>&1 | grep -E "^STEPROW " || echo "FAILED")
        echo "$gemm $line" | tee -a "$log" | sed -E 's/"PhaseMs".*//'
        [ "$line" = FAILED ] && rc=1
    done
done
if [ "${CE_IGNORE_SWEEP:-1}" = 1 ]; then
    mkdir -p "$OUT/ignore7"
    SLOTH_CE_MEMORY=0 SLOTH_CE_SHAPES=16384x4096x128256:ignore7 \
        SLOTH_CE_VARIANTS=fused-torchgemm,fused,fused-untuned,fused-torchgemm,fused,fused-untuned \
        dotnet "$bench" --suite ce-sweep --results "$OUT/ignore7" > "$OUT/ignore7/ce-sweep.log" 2>&1 || rc=1
    grep -E "^\| " "$OUT/ignore7/ce-sweep.md" | head -9
fi
exit $rc
