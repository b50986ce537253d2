#!/usr/bin/env bash
# Type-checks every CUDA file with clang's CUDA front end against stub runtime headers, host and device side, for the
# oldest (sm_75) and a newer (sm_80) architecture, and generates device PTX (which checks inline-asm constraints).
# For machines without nvcc: it catches syntax, type and asm mistakes before a GPU run; it does not replace nvcc's
# warnings-as-errors build on the GPU machine. Needs clang (Debian: clang-14).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
native="$(dirname "$here")"
clang="${CLANG:-$(command -v clang-14 || command -v clang)}"
rc=0
for f in "$native"/cuda/*.cu; do
    for arch in sm_75 sm_80; do
        for mode in "--cuda-host-only -fsyntax-only" "--cuda-device-only -fsyntax-only" "--cuda-device-only -O2 -S -o /dev/null"; do
            # shellcheck disable=SC2086
            "$clang" -x cuda $mode --cuda-gpu-arch=$arch -nocudainc -nocudalib -Xclang -fno-cuda-host-device-constexpr -std=c++17 -Wall -Wextra -Wshadow -Werror \
                -I"$here/cuda-stub" -I"$native/include" -I"$native/src" -DSLOTH_WITH_CUDA=1 "$f" || { echo "FAILED: $f ($arch, $mode)"; rc=1; }
        done
    done
done
[ $rc = 0 ] && echo "cuda syntax check: all $(ls "$native"/cuda/*.cu | wc -l) files clean"
exit $rc
