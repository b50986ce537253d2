#!/usr/bin/env bash
# Prepared in round 27 (issue 25): what one dependency between phases costs on this GPU (native/tools/sync_latency.cu:
# kernel boundaries in a graph, with and without PDL, against persistent kernels synchronised by round 18's grid
# barrier, by a counter that only grows, and by one-to-one flags). Needs only nvcc, not the library: run it alone as
#     bash tools/gpu-steps/lease-r28-3.sh $OUT
# or from another step script. A persistent decode step pays off only if the counter's figure is well under the
# launches+pdl figure.
set -uo pipefail
OUT="${1:?usage: lease-r28-3.sh OUTDIR}"
bin=/tmp/sync_latency
nvcc -O3 -std=c++17 -arch=sm_90 -o "$bin" native/tools/sync_latency.cu > "$OUT/sync-latency-build.log" 2>&1
echo "sync_latency build: exit $?"
for phases in 1000 4000; do timeout 60 "$bin" "$phases"; echo "exit $?"; done 2>&1 | tee "$OUT/sync-latency.txt"
