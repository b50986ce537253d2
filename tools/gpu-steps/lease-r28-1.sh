#!/usr/bin/env bash
# Round 28, call 1 (issue 25), on branch r28-wide-v1: round 24's first wide NF4 GEMM (batch 9 to 64 on tensor cores
# from the NF4 weights; round 24 measured batch 64 Llama-3.2-1B 26,684 and Qwen3-1.7B 15,493 tokens/s against the
# dequantizing path's 22,589 and 13,563, but its tests never ran: a division by zero sizing its scratch for widths
# under 128 killed the test process; fixed on this branch). (1) The wide GEMM's tests and the other decode tests that
# run NF4 products past 8 rows; (2) batch 64 and 16, NF4, Qwen3-1.7B and Llama-3.2-1B, 512 new tokens, against variant
# nowide (the dequantize + cuBLASLt path, main's), built while the tests run; (3) Qwen3-1.7B batch 64, each projection
# class alone (--only: q/k/v, o, gate/up, down) for the wide GEMM, nowide and the dense copies: where a wide GEMM's
# time goes, for its next version; (4) last, as the call allows: the Nsight Compute profile of the tensor-core
# attention walk at batch 64 (Qwen3-1.7B, dense copies, two launches after ~450 steps).
set -uo pipefail
OUT="${1:?usage: lease-r28-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant nowide cuda/nf4_gemm_wide.cu "bool nf4_wide_takes(const Nf4GemvArgs\& a) {" \
    "bool nf4_wide_takes(const Nf4GemvArgs\& a) { if (a.batch > 0) return false;"
start_variant_builds nowide
gpu_tests tests 170 "FullyQualifiedName~DecodeWideNf4Gemm|FullyQualifiedName~DecodeEngineGpu|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeTensorCoreGemv"
grep -E "^failed" -A8 "$OUT/tests.log" | head -30
decode_run wide "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64,16 --steps 512
only="--presets qwen3-1.7b --batches 64 --steps 512 --only Qkv,O,GateUp,Down"
decode_run wide-only "$SLOTHSHARP_NATIVE_PATH" $only
wait "${variant_pids[@]}"
decode_run nowide "$(variant_lib nowide)" --presets qwen3-1.7b,llama-3.2-1b --batches 64,16 --steps 512
decode_run nowide-only "$(variant_lib nowide)" $only
decode_run dense-only "$SLOTHSHARP_NATIVE_PATH" $only --dequantized
timeout 150 ncu --kernel-name regex:attention_kernel --launch-skip 12600 --launch-count 2 --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --dequantized --presets qwen3-1.7b \
    --batches 64 --steps 512 --results "$OUT/ncu-run" > "$OUT/ncu-attention.txt" 2>&1
echo "ncu exit $?"; grep -E "attention_kernel|Duration|Registers|Achieved Occupancy|Theoretical Occupancy|Block Limit|DRAM Throughput|Memory Throughput|Waves|stalled_[a-z_]*_per_issue_active" \
    "$OUT/ncu-attention.txt" | grep -vE " 0(\.0+)?$" | head -70; snap
