#!/usr/bin/env bash
# Round 24, call 1 (issue 25): the fusions that fold launches away (Norm: the residual norms into the grouped GEMVs
# that read them; AttentionMerge: the partials' merge into the attention's last block) were last timed at batch 1 in
# round 20, before the tensor-core GEMVs (round 21) changed what a GEMV block costs; time them again on the tiles.
# Then an nsys timeline of the batch-1 step's graph nodes (each kernel's start and end, so the gaps between dependent
# launches show), and round 23's GPU test of the grouped soft-capped attention at every group size.
set -uo pipefail
OUT="${1:?usage: lease-r24-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
decode_run fusions-b1 "$SLOTHSHARP_NATIVE_PATH" --presets llama-3.2-1b,qwen3-1.7b --batches 1 --fusions None,Norm,AttentionMerge,3
NSYS="$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda*/nsight-systems*/bin/nsys /opt/nvidia/nsight-systems/*/target-linux-x64/nsys 2>/dev/null | head -1)"
echo "== nsys: ${NSYS:-not found}"
if [ -n "$NSYS" ]; then
    for p in llama-3.2-1b qwen3-1.7b; do
        timeout 120 "$NSYS" profile --cuda-graph-trace=node -t cuda -o "/tmp/dec-$p" --force-overwrite true \
            dotnet "$bench" --suite decode --presets "$p" --batches 1 --steps 64 --prefill 0 --fusions None --no-plain \
            --results "$OUT/nsys-run-$p" > "$OUT/nsys-$p.log" 2>&1; echo "nsys $p exit $?"
        timeout 90 "$NSYS" stats -q --report cuda_gpu_trace --format csv -o "/tmp/dec-$p-trace" "/tmp/dec-$p.nsys-rep" >> "$OUT/nsys-$p.log" 2>&1
        f="$(ls /tmp/dec-$p-trace*.csv 2>/dev/null | head -1)"
        [ -n "$f" ] && { tail -n 1200 "$f" | gzip > "$OUT/nsys-trace-$p.csv.gz"; echo "trace rows $(wc -l < "$f")"; }
        snap
    done
fi
gpu_tests softcap-option 150 "FullyQualifiedName~SoftcapAttentionOptionTests|FullyQualifiedName~SoftcapAttentionTests"
grep -E "^failed" "$OUT/softcap-option.log" | head -10
