#!/usr/bin/env bash
# Round 10, third call (issue 24, "on the GPU where it pays"): `sloth export` with the C# quantizers on the CPU cores
# against `--device cuda` (sloth_ggml_quantize on the GPU), at the 1B shape and at the 8B shape, where quantization
# is ~8x the work. Then the GGUF quantizer GPU tests (the NaN-led sub-block fix). Results in $OUT/export-speed*.txt.
set -uo pipefail
OUT="${1:?usage: lease-r10c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
echo "== GGUF quantizer GPU tests"
timeout 60 dotnet "$tests" --no-progress --filter "TestCategory=Gpu&FullyQualifiedName~Gguf" > "$OUT/tests-gpu-gguf.log" 2>&1
echo "exit $?"; summary "$OUT/tests-gpu-gguf.log"; snap
echo "== export speed, 1B (dense: cpu vs cuda)"
EXPORT_NF4=0 timeout 120 bash tools/gpu-steps/export-speed.sh "$OUT" > /dev/null 2>&1; echo "exit $?"
grep -E "==|exit|stages" "$OUT/export-speed.txt"; snap
echo "== export speed, 8B (dense: cpu vs cuda)"
mkdir -p "$OUT/8b"
EXPORT_PRESET=llama-3.1-8b EXPORT_NF4=0 timeout 300 bash tools/gpu-steps/export-speed.sh "$OUT/8b" > /dev/null 2>&1; echo "exit $?"
grep -E "==|exit|stages" "$OUT/8b/export-speed.txt"; snap
