#!/usr/bin/env bash
# Checks the device quantizers' NaN handling on the host (see quantize_all.cpp): builds the quantizers twice, as the
# CPU twin and emulating the GPU's NaN results through x86_result, and compares their bytes for every type. The H100
# itself is the final check (GgufNativeQuantizerGpuTests.CudaMatchesTheCpuBytesOnNonFiniteValues).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
native="$(cd "$here/../../../native" && pwd -P)"
w="$(mktemp -d)"; trap 'rm -rf "$w"' EXIT
flags=(-O2 -std=c++17 -Wall -Wextra -Werror -I"$native/src" -I"$native/include")
g++ "${flags[@]}" "$here/quantize_all.cpp" -o "$w/host"
g++ "${flags[@]}" -DSLOTH_GGML_EMULATE_DEVICE_NAN "$here/quantize_all.cpp" -o "$w/device"
"$w/host" "$w/host" && "$w/device" "$w/device"
rc=0
for f in "$w"/host.*.bin; do
    t="${f##*/host.}"
    if cmp -s "$f" "$w/device.$t"; then echo "type ${t%.bin}: identical ($(stat -c %s "$f") bytes)"
    else echo "type ${t%.bin}: DIFFERENT, first at $(cmp "$f" "$w/device.$t" | head -1)"; rc=1; fi
done
exit $rc
