#!/usr/bin/env bash
# Round 16, second call: the one-pass soft-capped attention after the first run (where its tile loads waited for each
# load: 6.72 ms a Gemma-2-2B layer against the blocks' 3.84) now loads its tiles and masks with cp.async, and Auto takes
# it for transposed/expanded views (copies). Its tests (tolerances against the blocks path's bf16 score rounding), the
# layer both ways, the Gemma-2-2B step (call 1, blocks: 28,125 tokens/s at 21.10 GB), the sanitizers, then the compute_75
# build's tests of round 15-16's kernels (run with SLOTHSHARP_SM75=1). Every step snaps.
set -uo pipefail
OUT="${1:?usage: lease-r16-flash2.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
gpu_tests tests-softcap 120 "FullyQualifiedName~Softcap"
for method in flash blocks; do
    timeout 90 dotnet "$bench" --results "$OUT" --suite softcap-row --method "$method" > "$OUT/softcap-$method.log" 2>&1
    echo "softcap-row $method: exit $?"; grep -E "SOFTCAP" "$OUT/softcap-$method.log" | tail -1; snap
done
step_row gemma-2-2b fused
memcheck sanitizer-flash 120 "FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
racecheck racecheck-flash 120 "FullyQualifiedName~SoftcapFlashTests&TestCategory=Sanitize"
sm75_tests tests-sm75 200 "FullyQualifiedName~SwiGlu|FullyQualifiedName~RopeTests|FullyQualifiedName~Softcap"
