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
#   step_row SHAPE PATH             `bench --suite step-row` (no checkpointing, expandable segments) appended to
#                                   $OUT/rows.log, its tokens/s, peak and phases printed;
#   softcap_row METHOD              `bench --suite softcap-row --method METHOD` (one Gemma-2-2B soft-capped attention
#                                   layer, forward + backward) into $OUT/softcap-METHOD.log, its median printed;
#   start_main_build                builds main's native tree, carried as gpu-b-native/, into /tmp/b-install in the
#                                   background (its pid in $bpid, the library path in $libB): the B of an A/B call;
#   start_bnb_build                 builds bitsandbytes from .bnb/bitsandbytes-src.tar.gz (carried; see
#                                   families-anchors.sh) for sm_90 in the background (its pid in $bnb_pid);
#   use_bnb                         waits for that build, then puts it on PYTHONPATH with the metadata transformers reads.
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
