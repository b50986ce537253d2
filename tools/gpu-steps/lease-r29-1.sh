#!/usr/bin/env bash
# Round 29 (issue 25), main at 088fc8a: one call that (1) runs the wide NF4 GEMM's, engine, launch-mode and tensor-core
# GEMV GPU tests on main's selection (clusters at batch 9-16, the scratch past 16 rows) with the two review commits
# (500d564, 088fc8a) that no GPU has run; (2) times batch 64, 32 and 16 on both shapes, and each class alone at batch
# 64 (Qwen3-1.7B); (3) Nsight Compute over the four wide launches of one layer at batch 64 (Qwen3-1.7B): registers,
# occupancy, stall reasons, DRAM throughput, and the SASS page of the gate/up launch; (4) variants
# lambda (088fc8a's kernel, its step a lambda; main's is a forced-inline function) and nowide (main's dequantize + cuBLASLt path) at the batches (2) times.
set -uo pipefail
OUT="${1:?usage: lease-r29-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant nowide cuda/nf4_gemm_wide.cu "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) {" \
    "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) { if (g.batch > 0) return false;"
native_variant lambda cuda/nf4_gemm_wide.cu "kWideClusterMaxTiles = 2;" "kWideClusterMaxTiles = 2;"
cp tools/gpu-steps/r29-lambda-nf4_gemm_wide.cu /tmp/nvlambda/cuda/nf4_gemm_wide.cu  # 088fc8a's kernel: the step a lambda
start_variant_builds nowide lambda
usage() { cuobjdump --dump-resource-usage "$1" 2>/dev/null | grep -A1 -E "nf4_wide|attention_kernel" | grep -E "Function|REG" | sed 's/^ *//' > "$OUT/usage-$2.txt"; grep -A1 "nf4_wide_kernel" "$OUT/usage-$2.txt" | head -24; }
usage "$SLOTHSHARP_NATIVE_PATH" main
gpu_tests tests 100 "FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeTensorCoreGemv"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
decode_run wide "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64,32,16 --steps 512
decode_run wide-only "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 64 --steps 512 --only each
ncu_wide() {  # NAME LIB BATCH
    timeout 120 env SLOTHSHARP_NATIVE_PATH="$2" ncu --kernel-name regex:nf4_wide_kernel --launch-skip 448 --launch-count 4 \
        --section LaunchStats --section Occupancy --section WarpStateStats --section SpeedOfLight --section SourceCounters \
        --section MemoryWorkloadAnalysis --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
        --import-source no -o "$OUT/wide-$1" dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain \
        --presets qwen3-1.7b --batches "$3" --steps 8 --results "$OUT/ncu-run-$1" > "$OUT/ncu-wide-$1.log" 2>&1
    echo "ncu $1 exit $?"
    ncu -i "$OUT/wide-$1.ncu-rep" --print-details all > "$OUT/ncu-wide-$1.txt" 2>&1
    grep -E "  void|nf4_wide|Registers Per Thread|Cluster|Achieved Occupancy|Theoretical Occupancy|Block Limit|Duration|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|Local|stalled_[a-z_]*_per_issue_active" \
        "$OUT/ncu-wide-$1.txt" | grep -vE " 0(\.0+)?$" | head -120
    gzip -f "$OUT/ncu-wide-$1.txt"; snap
}
ncu_wide b64 "$SLOTHSHARP_NATIVE_PATH" 64
ncu -i "$OUT/wide-b64.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu-wide-sass.csv" 2>&1
echo "sass rows: $(wc -l < "$OUT/ncu-wide-sass.csv")"; gzip -f "$OUT/ncu-wide-sass.csv"; rm -f "$OUT"/wide-*.ncu-rep; snap
wait "${variant_pids[@]}"
usage "$(variant_lib lambda)" lambda
decode_run nowide "$(variant_lib nowide)" --presets qwen3-1.7b,llama-3.2-1b --batches 64,32 --steps 512
decode_run lambda "$(variant_lib lambda)" --presets qwen3-1.7b,llama-3.2-1b --batches 64,32,16 --steps 512
