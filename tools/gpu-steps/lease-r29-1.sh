#!/usr/bin/env bash
# Round 29 (issue 25; prepared, not run: round 29's one call had time for lease-r29-2.sh only). One call:
# (1) the wide NF4 GEMM's, attention, tensor-core GEMV, launch-mode and engine GPU tests (150 s at most) on the
#     commits no GPU has run: 500d564, 088fc8a, and round 29's mma orders (independent accumulators innermost) in the
#     wide kernel (143 registers instead of 222 at batch 33-64, nvcc 11.8), the attention's tensor-core walk (its
#     scores) and the gated tile GEMV; main's selection (clusters at batch 9-16, the scratch past 16 rows);
# (2) batch 64, 32, 16 and 1 on both shapes, and each class alone at batch 64 (Qwen3-1.7B);
# (3) Nsight Compute over the four wide launches of one layer at batch 64 (Qwen3-1.7B): registers, occupancy, stall
#     reasons, DRAM throughput, and the SASS page with its counters;
# (4) variants chain (the three files as round 28 left them: mmas tile by tile; the A/B of round 29's orders) and
#     nowide (main's dequantize + cuBLASLt path, batch 64 and 32) timed in the same call.
set -uo pipefail
OUT="${1:?usage: lease-r29-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant nowide cuda/nf4_gemm_wide.cu "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) {" \
    "bool nf4_wide_group_takes(const Nf4GemvGroupArgs\& g) { if (g.batch > 0) return false;"
# Variant chain: round 28's three files (the mmas tile by tile). Before the call, untracked (they travel with the tree):
#   mkdir -p tools/gpu-steps/r29-chain && for f in nf4_gemm_wide.cu decode_attention_mma.cuh nf4_gemv_tiles.cuh; do
#     git show 088fc8a:native/cuda/$f > tools/gpu-steps/r29-chain/$f; done
# (nf4_gemv_tiles.cuh gains word_of in round 29, which nf4_gemm_wide.cu uses: the three go together.)
chain=tools/gpu-steps/r29-chain
if [ -f "$chain/nf4_gemm_wide.cu" ]; then
    native_variant chain cuda/nf4_gemm_wide.cu "kWideClusterMaxTiles = 2;" "kWideClusterMaxTiles = 2;"
    cp "$chain"/* /tmp/nvchain/cuda/
    start_variant_builds nowide chain
else
    echo "no $chain: variant chain skipped"; start_variant_builds nowide
fi
usage() { cuobjdump --dump-resource-usage "$1" 2>/dev/null | grep -A1 -E "nf4_wide|attention_kernel" | grep -E "Function|REG" | sed 's/^ *//' > "$OUT/usage-$2.txt"; grep -A1 "nf4_wide_kernel" "$OUT/usage-$2.txt" | head -24; }
usage "$SLOTHSHARP_NATIVE_PATH" main
gpu_tests tests 150 "FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
# The A/B rows first (main against chain and nowide, one library after the other on the same warm GPU), then the
# diagnostics: each class alone, Nsight Compute.
decode_run wide "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64,32,16,1 --steps 512
wait "${variant_pids[@]}"
if [ -f "$chain/nf4_gemm_wide.cu" ]; then
    usage "$(variant_lib chain)" chain
    decode_run chain "$(variant_lib chain)" --presets qwen3-1.7b,llama-3.2-1b --batches 64,32,16,1 --steps 512
fi
decode_run nowide "$(variant_lib nowide)" --presets qwen3-1.7b,llama-3.2-1b --batches 64,32 --steps 512
decode_run wide-only "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b --batches 64 --steps 512 --only each
ncu_wide b64 "$SLOTHSHARP_NATIVE_PATH" 64
ncu -i "$OUT/wide-b64.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu-wide-sass.csv" 2>&1
echo "sass rows: $(wc -l < "$OUT/ncu-wide-sass.csv")"; gzip -f "$OUT/ncu-wide-sass.csv"; rm -f "$OUT"/wide-*.ncu-rep; snap
