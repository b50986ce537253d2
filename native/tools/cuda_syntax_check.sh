#!/usr/bin/env bash
# Type-checks every CUDA file with clang's CUDA front end against stub runtime headers, host and device side, for the
# oldest (sm_75), a newer (sm_80) and Hopper's (sm_90) architecture, and generates device PTX (which checks inline-asm
# constraints).
# Arguments: the .cu files to check (default: every file in native/cuda; the whole set takes ~10 minutes on 2 cores).
# For machines without nvcc: it catches syntax, type and asm mistakes before a GPU run; it does not replace nvcc's
# warnings-as-errors build on the GPU machine. Needs clang (Debian: clang-14).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
native="$(dirname "$here")"
clang="${CLANG:-$(command -v clang-14 || command -v clang)}"
# sm_90 (the Hopper-only paths: programmatic dependent launch's griddepcontrol) needs clang 16 or newer (Debian:
# clang-19); skipped with a note when none is installed.
clang90="${CLANG90:-$(command -v clang-19 || command -v clang-18 || command -v clang-17 || command -v clang-16 || true)}"
[ -z "$clang90" ] && echo "cuda syntax check: no clang >= 16, sm_90 not checked (apt-get install clang-19)"
rc=0
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("$native"/cuda/*.cu)
for f in "${files[@]}"; do
    for arch in sm_75 sm_80 sm_90; do
        cc="$clang"
        if [ "$arch" = sm_90 ]; then [ -n "$clang90" ] || continue; cc="$clang90"; fi
        for mode in "--cuda-host-only -fsyntax-only" "--cuda-device-only -fsyntax-only" "--cuda-device-only -O2 -S -o /dev/null"; do
            # shellcheck disable=SC2086
            "$cc" -x cuda $mode --cuda-gpu-arch=$arch -nocudainc -nocudalib -Xclang -fno-cuda-host-device-constexpr -std=c++17 -Wall -Wextra -Wshadow -Werror \
                -I"$here/cuda-stub" -I"$native/include" -I"$native/src" -DSLOTH_WITH_CUDA=1 "$f" || { echo "FAILED: $f ($arch, $mode)"; rc=1; }
        done
    done
done
[ $rc = 0 ] && echo "cuda syntax check: all ${#files[@]} files clean"
exit $rc
