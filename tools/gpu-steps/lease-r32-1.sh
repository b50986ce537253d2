#!/usr/bin/env bash
# Round 32 (issue 25), call 1: round 31's five batch-1 changes, landed on main switched off (r32-switches.sh), timed
# against main's behaviour in one call. The call's command turns all five on in the tree before `./build.sh gpu-run`
# (`bash tools/gpu-steps/r32-switches.sh native all && ... ./build.sh gpu-run ...`), so the tree's library is ALL; this
# script builds three more from it: base (none: main's behaviour), noprep (all but the fused q/k preparation) and
# early (the trigger on entry alone).
# (1) on ALL, while the variants build: the NF4 GEMV, engine, persistent, fusion, launch-mode, attention and wide-GEMM
#     GPU tests (the persistent tests compare the launch path, whose q/k preparation is now the fused warp form, with
#     the persistent step's block form bit for bit), except the launch-count test, which expects main's 8 a layer
#     (ALL issues 7: the bench rows below print launches a step, 200 for Qwen3-1.7B and 116 for Llama-3.2-1B);
# (2) NF4 decode rows, 512 new tokens: batch 1 and 4 on all four libraries, Qwen3-1.7B and Llama-3.2-1B; batch 64 on
#     ALL and base. Equal digests mean equal bits (all five changes should keep them).
set -uo pipefail
OUT="${1:?usage: lease-r32-1.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
grep -E "^constexpr (bool|int64_t) k(EarlyDependentLaunch|TileStageX|TilePrefetchRest|AttentionPrefetchKeys|DecodeFusedPrep) " \
    native/cuda/*.cuh native/src/decode_kernels.h | tee "$OUT/switches-all.txt"
for v in base noprep early; do
    rm -rf "/tmp/nv$v" && cp -r native "/tmp/nv$v"
    bash tools/gpu-steps/r32-switches.sh "/tmp/nv$v" "$([ "$v" = base ] && echo none || echo "$v")"
done
start_variant_builds base noprep early
gpu_tests tests 210 "($tile_gemv_filter|FullyQualifiedName~DecodeAttentionGpu|FullyQualifiedName~DecodeWideNf4Gemm)&FullyQualifiedName!~TwoLaunchesAStep"
grep -E "^failed" -A8 "$OUT/tests.log" | head -40
wait "${variant_pids[@]}"
rows="--presets qwen3-1.7b,llama-3.2-1b --batches 1,4 --steps 512"
decode_run all "$SLOTHSHARP_NATIVE_PATH" $rows
decode_run base "$(variant_lib base)" $rows
decode_run noprep "$(variant_lib noprep)" $rows
decode_run early "$(variant_lib early)" $rows
decode_run all-b64 "$SLOTHSHARP_NATIVE_PATH" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
decode_run base-b64 "$(variant_lib base)" --presets qwen3-1.7b,llama-3.2-1b --batches 64 --steps 512
