#!/usr/bin/env bash
# Round 21, call 3 (issue 25): the tensor-core NF4 GEMVs after call 2 (the persistent rule, the -Werror fix, 16-warp
# blocks past k = 4096 for the down projections): their
# GPU tests again; A/B in one library, tiles vs lanes,
# batch 1 and 8; variant xa (kTileXAhead: the next step's activations loaded before the current step's arithmetic);
# Nsight Compute on the tile kernels (warp stall reasons).
set -uo pipefail
OUT="${1:?usage: lease-r21c.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
native_variant xa cuda/nf4_gemv_tiles.cuh "constexpr bool kTileXAhead = false;" "constexpr bool kTileXAhead = true;"
( build_native_variant /tmp/nvxa /tmp/nvxa-install || echo "variant xa failed" ) > "$OUT/build-xa.log" 2>&1 &
vpid=$!
filter="FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeEngineGpu"
gpu_tests tests 200 "$filter"
grep -E "step [0-9]+:|Expected|But was" "$OUT/tests.log" | head -20
echo "== decode A/B: tiles vs lanes"
timeout 170 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles,lanes \
    --presets llama-3.2-1b,qwen3-1.7b --batches 1,8 --results "$OUT/ab" > "$OUT/ab.log" 2>&1; echo "exit $?"
grep -E "batch" "$OUT/ab.log" | grep -v "memory held"; snap
wait "$vpid"; echo "variant build: exit $?"; tail -1 "$OUT/build-xa.log"
echo "== variant xa (tiles only)"
SLOTHSHARP_NATIVE_PATH=/tmp/nvxa-install/runtimes/linux-x64/native/libslothsharp.so timeout 120 dotnet "$bench" --suite decode \
    --prefill 0 --fusions None --no-plain --gemv tiles --presets llama-3.2-1b,qwen3-1.7b --batches 1,8 --results "$OUT/xa" \
    > "$OUT/xa.log" 2>&1; echo "exit $?"
grep -E "batch" "$OUT/xa.log" | grep -v "memory held"; snap
echo "== classes alone, batch 1, Llama-3.2-1B: main tiles, then xa"
timeout 60 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles --steps 256 \
    --presets llama-3.2-1b --batches 1 --only Qkv,O,GateUp,Down --results "$OUT/only" > "$OUT/only.log" 2>&1; echo "exit $?"
grep -E "ONLY" "$OUT/only.log"
SLOTHSHARP_NATIVE_PATH=/tmp/nvxa-install/runtimes/linux-x64/native/libslothsharp.so timeout 60 dotnet "$bench" --suite decode \
    --prefill 0 --fusions None --no-plain --gemv tiles --steps 256 --presets llama-3.2-1b --batches 1 \
    --only Qkv,O,GateUp,Down --results "$OUT/only-xa" > "$OUT/only-xa.log" 2>&1; echo "exit $?"
grep -E "ONLY" "$OUT/only-xa.log"; snap
echo "== ncu: the tile kernels, batch 1"
timeout 100 ncu --kernel-name regex:nf4_tile --launch-skip 40 --launch-count 4 --section SpeedOfLight --section LaunchStats \
    --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles --presets llama-3.2-1b --batches 1 \
    --steps 20 --results "$OUT/ncu-run" > "$OUT/ncu-tiles.txt" 2>&1; echo "ncu exit $?"
grep -E "  void|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy|Duration|DRAM Throughput|L1/TEX Cache Throughput|Issue Slots Busy|Warp Cycles Per Issued|Block Limit" "$OUT/ncu-tiles.txt" | head -70; snap
