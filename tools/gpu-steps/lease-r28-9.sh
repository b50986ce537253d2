#!/usr/bin/env bash
# Prepared in round 28, not run (issue 25): why the wide NF4 GEMM (cuda/nf4_gemm_wide.cu) runs far below its bytes at
# batch 64 (round 28: Qwen3-1.7B's q/k/v alone 0.796 ms a step through the clusters, 0.546 on the dequantizing path),
# and why the clusters lose at 8 n-tiles and win at 2. Nsight Compute over the four wide launches of one layer (q/k/v,
# o, gate/up, down) at batch 64 and 16, Qwen3-1.7B: main's selection (the scratch at 64, the clusters at 16) and
# variant cl8 (the clusters at every batch): registers, occupancy, cluster scheduling, DRAM throughput and stall
# reasons per issued instruction into $OUT/ncu-wide-*.txt.gz, the SASS page with its counters of the batch-64 gate/up
# launch into $OUT/ncu-wide-sass.csv.gz.
set -uo pipefail
OUT="${1:?usage: lease-r28-9.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant cl8 cuda/nf4_gemm_wide.cu "constexpr int kWideClusterMaxTiles = 2;" "constexpr int kWideClusterMaxTiles = 8;"
start_variant_builds cl8
ncu_wide b64 "$SLOTHSHARP_NATIVE_PATH" 64
ncu -i "$OUT/wide-b64.ncu-rep" --page source --csv --print-source sass --launch-skip 2 --launch-count 1 > "$OUT/ncu-wide-sass.csv" 2>&1
echo "sass rows: $(wc -l < "$OUT/ncu-wide-sass.csv")"; gzip -f "$OUT/ncu-wide-sass.csv"; rm -f "$OUT"/wide-*.ncu-rep; snap
ncu_wide b16 "$SLOTHSHARP_NATIVE_PATH" 16
wait "${variant_pids[@]}"
ncu_wide cl8-b64 "$(variant_lib cl8)" 64
rm -f "$OUT"/wide-*.ncu-rep; snap
