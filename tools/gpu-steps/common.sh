# Sourced by the tools/gpu-steps/lease-*.sh scripts (SLOTHSHARP_GPU_EXTRA of `./build.sh gpu-run`), after OUT is set:
# the bundle's test and bench assemblies, the compute_75 build's library, a one-line test summary, and snap, which
# packs the results so far into $DEVOUT/r.tgz (when DEVOUT is set) so that a call cut short still returns them.
# CUDA_CACHE_MAXSIZE: the compute_75 runs JIT the PTX of every decode kernel (minutes); a large cache lets each later
# process of the same call reuse it.
tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
bench="$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll"
lib75="$PWD/build/sm75-install/runtimes/linux-x64/native/libslothsharp.so"
export CUDA_CACHE_MAXSIZE=4294967296
summary() { grep -E "^\s*(total|failed|succeeded|skipped):" "$1"; grep -E "^failed " "$1" | head; }
snap() { [ -n "${DEVOUT:-}" ] && tar czf "$DEVOUT/r.tgz" -C "$OUT" . 2>/dev/null; true; }

# The steps every lease script repeats (new scripts use these; the ones already run stay as they ran):
#   gpu_tests NAME SECONDS FILTER   GPU tests whose names match FILTER (after TestCategory=Gpu) into $OUT/NAME.log;
#   sm75_tests NAME SECONDS FILTER  the same against the compute_75 build's library (the T4 code path, JIT here);
#   memcheck NAME SECONDS FILTER    the same under compute-sanitizer memcheck (exit 97 on any error); racecheck alike;
#   decode_run NAME LIB ARGS...     `bench --suite decode` on library LIB (prefill 0, no fusion, no plain-launch row)
#                                   into $OUT/NAME.log and $OUT/NAME/, ARGS added (presets, batches, steps, --only);
#   native_variant NAME FILE FROM TO [FILE FROM TO ...]
#                                   a fresh copy of native/ in /tmp/nvNAME with each FROM replaced by TO in its FILE
#                                   (relative to native/), and how many lines hold each TO (0: the edit missed);
#   build_native_variant SRC DEST   a sm_90 Release build of the native tree SRC installed into DEST (for A/B runs of
#                                   two libraries in one call: SLOTHSHARP_NATIVE_PATH=DEST/runtimes/linux-x64/native/...);
#   start_variant_builds NAME...    build_native_variant of each native_variant NAME in the background (logs in
#                                   $OUT/build-NAME.log, pids in variant_pids: wait "${variant_pids[@]}" before use);
#   variant_lib NAME                the library path of that variant's build;
#   hf_anchor PRESET                transformers' decode anchors on PRESET's random weights (sloth make-checkpoint):
#                                   eager at batch 64 and 1 with 128 new tokens, static cache + torch.compile at batch 1
#                                   with 512 (warmed up on the timed run's shapes), into $OUT/hf-decode.log;
#   step_row SHAPE PATH             `bench --suite step-row` (no checkpointing, expandable segments) appended to
#                                   $OUT/rows.log, its tokens/s, peak and phases printed;
#   softcap_row METHOD              `bench --suite softcap-row --method METHOD` (one Gemma-2-2B soft-capped attention
#                                   layer, forward + backward) into $OUT/softcap-METHOD.log, its median printed;
#   start_main_build                builds main's native tree, carried as gpu-b-native/, into /tmp/b-install in the
#                                   background (its pid in $bpid, the library path in $libB): the B of an A/B call;
#   start_bnb_build                 builds bitsandbytes from .bnb/bitsandbytes-src.tar.gz (carried; see
#                                   families-anchors.sh) for sm_90 in the background (its pid in $bnb_pid);
#   use_bnb                         waits for that build, then puts it on PYTHONPATH with the metadata transformers reads.
#   $tile_gemv_filter               the GPU tests of the NF4 GEMV op and of the decoding engine's GEMV kinds, persistent
#                                   step, fusions and launch modes (gpu_tests NAME SECONDS "$tile_gemv_filter");
#   ncu_tiles SECONDS               Nsight Compute over the tile GEMVs of Llama-3.2-1B at batch 1 (four launches: q/k/v,
#                                   o, gate/up, down): stall reasons per issued instruction into $OUT/ncu-tiles.txt.gz,
#                                   the gated kernel's SASS page with its counters into $OUT/ncu-tiles-sass.csv.gz;
#   ncu_wide NAME LIB BATCH         Nsight Compute over the four wide NF4 GEMM launches of one layer (q/k/v, o, gate/up,
#                                   down) of Qwen3-1.7B at BATCH on library LIB: launch stats, occupancy, stall reasons,
#                                   memory and source counters into $OUT/ncu-wide-NAME.txt.gz (the report kept as
#                                   $OUT/wide-NAME.ncu-rep for a source page; delete it before the call ends);
#   step_profile SECONDS NAME SHAPE PATH
#                                   `bench --suite step-row` of SHAPE (a -prof shape) on PATH under Nsight Compute, the
#                                   timed steps only (--profile-timed): kernel times by name into $OUT/ncu-NAME-summary.txt
#                                   (printed), the csv gzipped. Environment set before the call reaches the bench
#                                   (SLOTHSHARP_GEMM_TUNE=0 step_profile ...).
gpu_tests() {
    timeout "$2" dotnet "$tests" --no-progress --filter "TestCategory=Gpu&($3)" > "$OUT/$1.log" 2>&1
    echo "$1: exit $?"; summary "$OUT/$1.log"; snap
}
sm75_tests() {
    SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 gpu_tests "$@"
}
# Only the library's own kernels are sanitized (every __global__ in native/cuda, as gpu-run's sanitizer step): round
# 15's racecheck reported a hazard inside cuBLAS's split-K nvjet kernel, which is not ours to mend.
sanitize_filter=()
while IFS= read -r k; do sanitize_filter+=(--kernel-name "kns=$k"); done < <(cat native/cuda/*.cu native/cuda/*.cuh | perl -0777 -ne \
    'while (/__global__\s+(?:(?:void|static|inline)\s+|__launch_bounds__\s*\([^)]*\)\s*)*(\w+)\s*(?:<[^>(]*>\s*)?\(/g) { print "$1\n" }' | sort -u)
sanitize() {  # TOOL NAME SECONDS FILTER
    timeout "$3" compute-sanitizer --tool "$1" --target-processes all "${sanitize_filter[@]}" --error-exitcode 97 dotnet "$tests" --no-progress \
        --filter "TestCategory=Gpu&($4)" > "$OUT/$2.log" 2>&1
    echo "$2: exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/$2.log" | tail -2; summary "$OUT/$2.log"; snap
}
memcheck() { sanitize memcheck "$@"; }
racecheck() { sanitize racecheck "$@"; }
decode_run() {
    local name="$1" lib="$2"; shift 2
    echo "== decode $name"
    SLOTHSHARP_NATIVE_PATH="$lib" timeout 150 dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain \
        --results "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1; echo "exit $?"
    grep -E "batch" "$OUT/$name.log" | grep -v "memory held"; snap
}
native_variant() {
    local name="$1"; shift
    rm -rf "/tmp/nv$name" && cp -r native "/tmp/nv$name"
    local counts=""
    while [ $# -ge 3 ]; do
        sed -i "s/$2/$3/" "/tmp/nv$name/$1"
        counts+=" $(grep -c "$3" "/tmp/nv$name/$1")"
        shift 3
    done
    echo "variant $name:$counts"
}
build_native_variant() {
    cmake -S "$1" -B "$1-build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLOTH_CUDA_ARCHITECTURES=90 -DCMAKE_INSTALL_PREFIX="$2" \
        && cmake --build "$1-build" -j 12 && cmake --install "$1-build"
}
start_variant_builds() {
    variant_pids=()
    local v
    for v in "$@"; do
        ( build_native_variant "/tmp/nv$v" "/tmp/nv$v-install" > "$OUT/build-$v.log" 2>&1; echo "build $v: exit $?" ) &
        variant_pids+=($!)
    done
}
variant_lib() { echo "/tmp/nv$1-install/runtimes/linux-x64/native/libslothsharp.so"; }
hf_anchor() {
    local preset="$1" sloth="$SLOTHSHARP_APPS/sloth/sloth.dll"
    dotnet "$sloth" make-checkpoint --preset "$preset" --seed 1 --out "/tmp/anchor-$preset" > /dev/null 2>&1 || echo "make-checkpoint $preset failed"
    PYTHONUNBUFFERED=1 timeout 60 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes eager --batches 64,1 --new 128 \
        >> "$OUT/hf-decode.log" 2>&1; echo "eager $preset exit $?"
    PYTHONUNBUFFERED=1 timeout 150 python3 tools/bench/hf_decode_anchor.py "/tmp/anchor-$preset" --modes static --batches 1 --new 512 \
        --no-prefill >> "$OUT/hf-decode.log" 2>&1; echo "static $preset exit $?"
    rm -rf "/tmp/anchor-$preset"
    grep HFANCHOR "$OUT/hf-decode.log"; grep -iE "Error" "$OUT/hf-decode.log" | head -5; snap
}
start_main_build() {
    rm -rf /tmp/nb && cp -r gpu-b-native /tmp/nb
    build_native_variant /tmp/nb /tmp/b-install > "$OUT/build-b.log" 2>&1 &
    bpid=$!
    libB=/tmp/b-install/runtimes/linux-x64/native/libslothsharp.so
}
step_row() {
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 dotnet "$bench" --results "$OUT" --suite step-row --shape "$1" \
        --path "$2" --checkpointing 0 >> "$OUT/rows.log" 2>&1; echo "$1 $2 exit $?"
    grep -oE '"Shape":"[^"]+"|"Path":"[^"]+"|"TokensPerSecond":[0-9.]+|"PeakGb":[0-9.]+|"PhaseMs":\[[^]]+\]' "$OUT/rows.log" | paste - - - - - | tail -1; snap
}
softcap_row() {
    timeout 90 dotnet "$bench" --results "$OUT" --suite softcap-row --method "$1" > "$OUT/softcap-$1.log" 2>&1
    echo "softcap-row $1: exit $?"; grep -E "SOFTCAP" "$OUT/softcap-$1.log" | tail -1; snap
}
start_bnb_build() {
    rm -rf /tmp/bnb; mkdir -p /tmp/bnb/src /tmp/bnb/site
    tar xzf .bnb/bitsandbytes-src.tar.gz -C /tmp/bnb/src || echo "no .bnb/bitsandbytes-src.tar.gz"
    ( cd /tmp/bnb/src && cmake -S . -B build -DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=90 -G Ninja \
          && cmake --build build -j 8 ) > "$OUT/bnb-build.log" 2>&1 &
    bnb_pid=$!
}
use_bnb() {
    wait "$bnb_pid"; echo "bitsandbytes build: exit $?"; tail -2 "$OUT/bnb-build.log"
    local ver
    ver="$(sed -nE 's/^__version__ = "([^"]+)".*/\1/p' /tmp/bnb/src/bitsandbytes/__init__.py)"
    mkdir -p "/tmp/bnb/site/bitsandbytes-$ver.dist-info"
    printf 'Metadata-Version: 2.1\nName: bitsandbytes\nVersion: %s\n' "$ver" > "/tmp/bnb/site/bitsandbytes-$ver.dist-info/METADATA"
    export PYTHONPATH="/tmp/bnb/src:/tmp/bnb/site${PYTHONPATH:+:$PYTHONPATH}"
    python3 -c "import bitsandbytes, importlib.metadata as m; print('bitsandbytes', m.version('bitsandbytes'))"
}
tile_gemv_filter="FullyQualifiedName~Nf4Gemv|FullyQualifiedName~DecodeTensorCoreGemv|FullyQualifiedName~DecodePersistent|FullyQualifiedName~DecodeFusion|FullyQualifiedName~DecodeLaunchMode|FullyQualifiedName~DecodeEngineGpu"
ncu_tiles() {
    timeout "$1" ncu --kernel-name regex:nf4_tile --launch-skip 40 --launch-count 4 --section LaunchStats --section Occupancy \
        --section WarpStateStats --section SourceCounters --section SpeedOfLight \
        --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio --import-source no -o "$OUT/tiles" \
        dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain --gemv tiles --presets llama-3.2-1b --batches 1 \
        --steps 20 --results "$OUT/ncu-run" > "$OUT/ncu-tiles.log" 2>&1; echo "ncu exit $?"
    ncu -i "$OUT/tiles.ncu-rep" --print-details all > "$OUT/ncu-tiles.txt" 2>&1
    grep -E "  void|nf4_tile|Registers Per Thread|Achieved Occupancy|Duration|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|stalled_[a-z_]*_per_issue_active" \
        "$OUT/ncu-tiles.txt" | grep -vE " 0(\.0+)?$" | head -90
    ncu -i "$OUT/tiles.ncu-rep" --page source --csv --print-source sass --kernel-name regex:gated > "$OUT/ncu-tiles-sass.csv" 2>&1
    echo "sass rows: $(wc -l < "$OUT/ncu-tiles-sass.csv")"
    gzip -f "$OUT/ncu-tiles-sass.csv" "$OUT/ncu-tiles.txt"; rm -f "$OUT/tiles.ncu-rep"; snap
}
ncu_wide() {  # NAME LIB BATCH
    timeout 120 env SLOTHSHARP_NATIVE_PATH="$2" ncu --kernel-name regex:nf4_wide_kernel --launch-skip 448 --launch-count 4 \
        --section LaunchStats --section Occupancy --section WarpStateStats --section SpeedOfLight --section SourceCounters \
        --section MemoryWorkloadAnalysis --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
        --import-source no -o "$OUT/wide-$1" dotnet "$bench" --suite decode --prefill 0 --fusions None --no-plain \
        --presets qwen3-1.7b --batches "$3" --steps 8 --results "$OUT/ncu-run-$1" > "$OUT/ncu-wide-$1.log" 2>&1
    echo "ncu $1 exit $?"
    ncu -i "$OUT/wide-$1.ncu-rep" --print-details all > "$OUT/ncu-wide-$1.txt" 2>&1
    grep -E "  void|nf4_wide|Registers Per Thread|Cluster|Achieved Occupancy|Theoretical Occupancy|Block Limit|Duration|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|Local|stalled_[a-z_]*_per_issue_active" \
        "$OUT/ncu-wide-$1.txt" | grep -vE " 0(\.0+)?$" | head -120
    gzip -f "$OUT/ncu-wide-$1.txt"; snap
}
step_profile() {
    local secs="$1" name="$2" shape="$3" path="$4"
    timeout "$secs" ncu --profile-from-start off --clock-control none --target-processes all --metrics gpu__time_duration.sum --csv \
        dotnet "$bench" --results "$OUT/prof-$name" --suite step-row --shape "$shape" --path "$path" --checkpointing 0 \
        --profile-timed > "$OUT/ncu-$name.csv" 2> "$OUT/ncu-$name.err"; echo "step profile $name: exit $?"
    python3 tools/bench/ncu_kernels.py "$OUT/ncu-$name.csv" > "$OUT/ncu-$name-summary.txt"
    head -60 "$OUT/ncu-$name-summary.txt"; gzip -f "$OUT/ncu-$name.csv"; snap
}
