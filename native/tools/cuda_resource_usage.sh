#!/usr/bin/env bash
# Registers, spills and (optionally) the SASS of the kernels in CUDA files, on a machine without a GPU: nvcc compiles
# each file to a cubin for one architecture (ptxas -v) and this prints one line per kernel whose name matches a filter.
#
# Why: a kernel's registers decide how many blocks an SM holds, and its SASS shows what the source does not (round 29:
# the wide NF4 GEMM's mmas ran as dependent chains of 8 per tile, 222 registers at batch 33-64; the attention's and
# the gated tile GEMV's scores / products likewise ran their two tiles' chains one after the other). Profiles on the
# GPU machine say where time goes; this says what the compiler made, in seconds, without a lease.
#
# Any CUDA toolkit with sm_90 works; the numbers are that nvcc's (the GPU machine's nvcc 13 may differ by a few
# registers). On Debian 12 without CUDA: add the non-free component (a file in /etc/apt/sources.list.d with
# "Components: contrib non-free"), apt-get install --no-install-recommends nvidia-cuda-toolkit (nvcc 11.8), and use
# clang-14 as its host compiler (CCBIN, the default here). Take nvcc off PATH afterwards (or remove the package):
# CMake builds the CUDA kernels whenever it finds nvcc, and nvcc 11.8 is not the toolkit the project builds with.
#
# Usage: native/tools/cuda_resource_usage.sh [-a ARCH] [-k REGEX] [-s] FILE.cu...
#   -a ARCH   sm_XX (default sm_90)
#   -k REGEX  only kernels whose mangled name matches (grep -E), e.g. 'nf4_wide_kernel'
#   -s        also write each matching kernel's SASS to $OUT_DIR (default /tmp/cuda-sass)/FILE.KERNEL.sass, with the
#             count of its HMMA, LDS, LDG, BAR and local-memory (LDL/STL) instructions
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
native="$(dirname "$here")"
nvcc="${NVCC:-$(command -v nvcc || ls /usr/lib/nvidia-cuda-toolkit/bin/nvcc 2>/dev/null || true)}"
ccbin="${CCBIN:-clang-14}"
arch=sm_90 filter=. sass=0
usage() { sed -n '/^# Usage:/,/^set -euo/{/^set -euo/!p}' "$0"; exit 2; }
while getopts "a:k:s" o; do
    case "$o" in
        a) arch="$OPTARG" ;;
        k) filter="$OPTARG" ;;
        s) sass=1 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage
[ -n "$nvcc" ] || { echo "cuda resource usage: no nvcc (see the top of $0)"; exit 2; }
out="${OUT_DIR:-/tmp/cuda-sass}"
mkdir -p "$out"
rc=0
for f in "$@"; do
    name="$(basename "$f" .cu)"
    cubin="$out/$name.$arch.cubin"
    if ! log="$("$nvcc" -ccbin "$ccbin" -cubin -arch="$arch" -O3 -std=c++17 -I"$native/include" -I"$native/src" \
        -DSLOTH_WITH_CUDA=1 -Xptxas -v "$f" -o "$cubin" 2>&1)"; then
        echo "$log" | grep -E "error" | head -20; echo "FAILED: $f ($arch)"; rc=1; continue
    fi
    # ptxas -v: "Compiling entry function 'NAME'", then "N bytes stack frame, S bytes spill stores, L bytes spill
    # loads", then "Used R registers, ...": one line per kernel.
    echo "$log" | awk -v filter="$filter" -v file="$name" '
        /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
        /spill stores/ { spill = $5 "/" $9 }
        /Used [0-9]+ registers/ { if (fn ~ filter) printf "%-28s %4d regs  spill st/ld %-9s %s\n", file, $5, spill, fn }'
    if [ "$sass" = 1 ]; then
        rm -f "$out/$name".*.sass
        cuobjdump -sass "$cubin" | awk -v filter="$filter" -v dir="$out" -v file="$name" '
            /Function : / { name = $3; keep = name ~ filter; if (keep) path = dir "/" file "." substr(name, 1, 120) ".sass" }
            keep { print > path }'
        for s in "$out/$name".*.sass; do
            [ -f "$s" ] || continue
            b="$(basename "$s" .sass)"
            printf "  ...%s: HMMA %d  LDS %d  LDG %d  BAR %d  LDL/STL %d\n" "${b: -60}" "$(grep -c HMMA "$s")" \
                "$(grep -c 'LDS' "$s")" "$(grep -c 'LDG' "$s")" "$(grep -c 'BAR.SYNC' "$s")" "$(grep -cE 'LDL|STL' "$s")"
        done
    fi
done
exit $rc
