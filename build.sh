#!/usr/bin/env bash
# SlothSharp build driver. Verbs (./build.sh help):
#   native            build libslothsharp.so with CMake (CUDA kernels when nvcc is found) into artifacts/native
#   bindings [--check] regenerate src/Interop/Generated from native/include/slothsharp.h (--check: fail if stale)
#   build             native + dotnet build (Release)
#   test [args]       build, run the NUnit suite, print "N passed, N failed, N skipped"; args go to the test runner
#   demo [args]       build, run the main job (the `sloth` CLI; default: `sloth info` on a golden checkpoint)
#   bench [args]      build, run the BenchmarkDotNet suite (GPU cases need a CUDA build and a GPU)
#   pack              dotnet pack SlothSharp + SlothSharp.Interop (native library in runtimes/linux-x64/native)
#   gpu-bundle        pack what the GPU machine needs into .gpu-bundle/ (runtime, assemblies, test data)
#   gpu-run OUTDIR    on the GPU machine: build native with nvcc, run all tests (GPU ones too, also against a
#                     compute_75-only build and under compute-sanitizer), run benchmarks; results into OUTDIR
#
# TorchSharp 0.107 needs libstdc++ from GCC >= 13. On older hosts (Debian 12) the processes that load it run in
# a Debian 13 userland that this script creates once with debootstrap (needs root) and caches in
# ${SLOTHSHARP_ROOTFS:-~/.cache/slothsharp/trixie-rootfs}.
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd -P)"
CONFIG="${CONFIG:-Release}"
TFM=net10.0
HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
ROOTFS="${SLOTHSHARP_ROOTFS:-$HOME/.cache/slothsharp/trixie-rootfs}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

log() { printf '\033[1m[build.sh]\033[0m %s\n' "$*" >&2; }
die() { printf '[build.sh] error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "needs root: $*"; fi; }

apt_install() {  # apt_install PKG...: installs Debian packages that are missing
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

cmd_native() {
    command -v cmake >/dev/null || apt_install cmake g++
    local args=(-S "$ROOT/native" -B "$ROOT/build/native" -DCMAKE_BUILD_TYPE=Release)
    command -v ninja >/dev/null && args+=(-G Ninja)
    [ -n "${SLOTH_CUDA_ARCHITECTURES:-}" ] && args+=("-DSLOTH_CUDA_ARCHITECTURES=$SLOTH_CUDA_ARCHITECTURES")
    [ -n "${SLOTH_CUDA:-}" ] && args+=("-DSLOTH_CUDA=$SLOTH_CUDA")
    [ -n "${SLOTH_WERROR:-}" ] && args+=("-DSLOTH_WERROR=$SLOTH_WERROR")
    # Explicit checks: this function also runs inside `if !`, where `set -e` does not apply.
    cmake "${args[@]}" >/dev/null || return 1
    cmake --build "$ROOT/build/native" -j "$(nproc)" || return 1
    cmake --install "$ROOT/build/native" >/dev/null || return 1
    log "native library: $ROOT/artifacts/native/runtimes/linux-x64/native/libslothsharp.so"
}

cmd_bindings() {
    apt_install python3 python3-clang-14 libclang1-14
    /usr/bin/python3 "$ROOT/tools/bindgen/gen_bindings.py" "$ROOT/native/include/slothsharp.h" \
        "$ROOT/src/Interop/Generated/NativeMethods.g.cs" "$@"
}

cmd_build() {
    cmd_native
    dotnet build "$ROOT/SlothSharp.slnx" -c "$CONFIG" -v quiet -nologo -clp:ErrorsOnly
}

# --- running TorchSharp processes ------------------------------------------------------------------------------
host_libstdcxx_ok() {
    local lib
    lib="$(/sbin/ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/{print $NF; exit}')"
    [ -n "$lib" ] && grep -q GLIBCXX_3.4.32 "$lib"
}

ensure_rootfs() {
    [ -x "$ROOTFS/usr/bin/env" ] && [ -e "$ROOTFS/.slothsharp-ready" ] && return 0
    [ "$(id -u)" = 0 ] || die "TorchSharp needs a newer libstdc++ than this host has; creating the Debian 13 userland needs root (or set SLOTHSHARP_ROOTFS to an existing one)"
    apt_install debootstrap
    log "creating a Debian 13 userland for TorchSharp in $ROOTFS (once, ~1 min)"
    rm -rf "$ROOTFS.tmp"; mkdir -p "$(dirname "$ROOTFS")"
    debootstrap --variant=minbase --include=libicu76,libssl3t64,ca-certificates trixie "$ROOTFS.tmp" >/dev/null \
        || die "debootstrap failed; see $ROOTFS.tmp/debootstrap/debootstrap.log"
    touch "$ROOTFS.tmp/.slothsharp-ready"
    rm -rf "$ROOTFS"; mv "$ROOTFS.tmp" "$ROOTFS"
}

# run_torch CMD...: runs CMD (a dotnet process that loads TorchSharp) directly, or inside the Debian 13 userland.
# The chroot gets private bind mounts (gone when the command ends) of the .NET install, the NuGet cache, the repo
# all at their host paths.
run_torch() {
    if host_libstdcxx_ok; then "$@"; return; fi
    ensure_rootfs
    local dotnet_root nuget
    dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
    nuget="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
    unshare --mount --propagation private -- bash -s "$ROOTFS" "$dotnet_root" "$nuget" "$ROOT" "$PWD" "$@" <<'INNER'
set -e
R=$1 DN=$2 NU=$3 REPO=$4 WD=$5; shift 5
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"
for d in /tmp "$DN" "$NU" "$REPO" "$WD"; do  # /tmp first: a later mount under /tmp stays visible
    [ -d "$d" ] || continue
    mkdir -p "$R$d"; mount --bind "$d" "$R$d"
done
exec chroot "$R" /usr/bin/env -i PATH="$DN:/usr/bin:/bin" HOME="$HOME" DOTNET_ROOT="$DN" NUGET_PACKAGES="$NU" \
    DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 TERM="${TERM:-dumb}" \
    ${SLOTHSHARP_NATIVE_PATH:+SLOTHSHARP_NATIVE_PATH="$SLOTHSHARP_NATIVE_PATH"} \
    /bin/bash -c 'cd "$0" && exec "$@"' "$WD" "$@"
INNER
}

# run_tests DLL [args]: runs the NUnit executable and prints the closing "N passed, N failed, N skipped" line.
run_tests() {
    local dll="$1"; shift
    local out rc=0
    out="$(mktemp)"
    set +e
    run_torch dotnet "$dll" --no-progress "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    summarize_tests "$out" "$rc"
}

summarize_tests() {  # summarize_tests LOG RC
    local total failed succeeded skipped
    total="$(grep -Eo '^ *total: *[0-9]+' "$1" | tail -1 | grep -Eo '[0-9]+' || true)"
    failed="$(grep -Eo '^ *failed: *[0-9]+' "$1" | tail -1 | grep -Eo '[0-9]+' || true)"
    succeeded="$(grep -Eo '^ *succeeded: *[0-9]+' "$1" | tail -1 | grep -Eo '[0-9]+' || true)"
    skipped="$(grep -Eo '^ *skipped: *[0-9]+' "$1" | tail -1 | grep -Eo '[0-9]+' || true)"
    rm -f "$1"
    if [ -z "$total" ]; then
        echo "0 passed, 1 failed"
        log "the test runner printed no summary (exit code $2)"
        return 1
    fi
    echo "${succeeded:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
    # Exit code 8 means "no test ran" (e.g. a filter matching nothing): not a failure of the suite itself.
    [ "${failed:-0}" = 0 ] && { [ "$2" = 0 ] || [ "$2" = 8 ]; }
}

cmd_test() {
    cmd_build
    run_tests "$ROOT/tests/bin/$CONFIG/$TFM/SlothSharp.Tests.dll" "$@"
}

cmd_demo() {
    cmd_build
    local cli="$ROOT/src/Cli/bin/$CONFIG/$TFM/sloth.dll"
    # No command, or only options: the QLoRA demo.
    if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- demo "$@"; fi
    run_torch dotnet "$cli" "$@"
}

cmd_bench() {
    cmd_build
    run_torch dotnet "$ROOT/bench/bin/$CONFIG/$TFM/SlothSharp.Bench.dll" "$@"
}

cmd_pack() {
    cmd_build
    dotnet pack "$ROOT/src/Interop/SlothSharp.Interop.csproj" -c "$CONFIG" -o "$ROOT/artifacts/packages" -v quiet
    dotnet pack "$ROOT/src/Api/SlothSharp.csproj" -c "$CONFIG" -o "$ROOT/artifacts/packages" -v quiet
    log "packages in $ROOT/artifacts/packages"
}

# --- the GPU machine ---------------------------------------------------------------------------------------------
# The bundle holds what the GPU machine lacks: the .NET runtime (no SDK there), the built assemblies without the
# CPU libtorch binaries (it has PyTorch's CUDA libtorch), and the golden test data. Sources travel with the tree.
cmd_gpu_bundle() {
    cmd_build
    local b="$ROOT/.gpu-bundle" dotnet_root
    dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
    rm -rf "$b"; mkdir -p "$b/apps"
    tar -C "$dotnet_root" -cJf "$b/dotnet-runtime.tar.xz" dotnet host shared/Microsoft.NETCore.App
    for app in tests:SlothSharp.Tests bench:SlothSharp.Bench src/Cli:sloth; do
        local dir="${app%%:*}" name="${app##*:}"
        mkdir -p "$b/apps/$name"
        # Keep the managed assemblies; of the native ones only LibTorchSharp's glue (found there through deps.json).
        (cd "$ROOT/$dir/bin/$CONFIG/$TFM" && find . -type f \
            ! -path './runtimes/*' -print0 | xargs -0 cp --parents -t "$b/apps/$name")
        # linux-x64 native assets (LibTorchSharp's glue, Skia for the plots) but not the CPU libtorch.
        mkdir -p "$b/apps/$name/runtimes/linux-x64/native"
        find "$ROOT/$dir/bin/$CONFIG/$TFM/runtimes/linux-x64/native" -maxdepth 1 -type f \
            ! -name 'libtorch*' ! -name 'libc10*' ! -name 'libgomp*' ! -name 'libshm*' ! -name 'libbackend_with_compiler*' \
            ! -name 'libjitbackend*' ! -name 'libnnapi*' ! -name 'libaoti*' -exec cp -t "$b/apps/$name/runtimes/linux-x64/native/" {} +
    done
    { git -C "$ROOT" rev-parse HEAD; git -C "$ROOT" diff --quiet HEAD || echo "(+ uncommitted changes)"; } > "$b/commit.txt" 2>/dev/null || true
    tar -C "$ROOT/.gpu-bundle" -cJf "$ROOT/.gpu-bundle.tar.xz" . && rm -rf "$b" && mkdir -p "$b" && mv "$ROOT/.gpu-bundle.tar.xz" "$b/bundle.tar.xz"
    log "GPU bundle: $(du -sh "$b" | cut -f1) in $b (carry .gpu-bundle; on the GPU machine: ./build.sh gpu-run \$OUT)"
}

cmd_gpu_run() {
    local out="${1:?usage: gpu-run OUTDIR}"; shift || true
    mkdir -p "$out"
    local b="$ROOT/.gpu-bundle" x=/tmp/slothsharp-gpu
    [ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
    rm -rf "$x"; mkdir -p "$x/dotnet"
    tar -C "$x" -xJf "$b/bundle.tar.xz"
    tar -C "$x/dotnet" -xJf "$x/dotnet-runtime.tar.xz"
    export DOTNET_ROOT="$x/dotnet" PATH="$x/dotnet:$PATH"
    local torchlib
    torchlib="${SLOTHSHARP_LIBTORCH:-$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')}"
    export LD_LIBRARY_PATH="$torchlib:${LD_LIBRARY_PATH:-}"
    { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -2;
      echo "commit: $(tr '\n' ' ' < "$x/commit.txt" 2>/dev/null || echo unknown)";
      echo "libtorch: $torchlib"; } | tee "$out/environment.txt"

    log "native build (all architectures, warnings as errors)"
    local werror=ON
    if ! (cmd_native) > "$out/native-build.log" 2>&1; then
        werror=OFF
        log "native build FAILED with warnings as errors; see native-build.log; retrying without -Werror"
        SLOTH_WERROR=OFF cmd_native >> "$out/native-build.log" 2>&1 || { grep -B2 -A6 -E "error|FAILED" "$out/native-build.log" | head -80; return 1; }
    fi
    echo "native build with -Werror: $werror" | tee -a "$out/environment.txt"
    local lib="$ROOT/artifacts/native/runtimes/linux-x64/native/libslothsharp.so"
    cuobjdump --list-elf --list-ptx "$lib" > "$out/cuobjdump.txt" 2>&1 || true
    log "compute_75-only (PTX) variant, to run the T4 code path on this GPU"
    local rc=0
    { cmake -S "$ROOT/native" -B "$ROOT/build/native-sm75" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DSLOTH_CUDA_ARCHITECTURES=75-virtual -DSLOTH_WERROR=$werror -DCMAKE_INSTALL_PREFIX="$ROOT/build/sm75-install" \
      && cmake --build "$ROOT/build/native-sm75" && cmake --install "$ROOT/build/native-sm75"; } >> "$out/native-build.log" 2>&1 \
      || { log "compute_75 build FAILED (native-build.log)"; rc=1; }
    local lib75="$ROOT/build/sm75-install/runtimes/linux-x64/native/libslothsharp.so"
    cuobjdump --list-elf --list-ptx "$lib75" >> "$out/cuobjdump.txt" 2>&1 || true

    local tests="$x/apps/SlothSharp.Tests/SlothSharp.Tests.dll"
    if [ "${SLOTHSHARP_TESTS:-1}" = 1 ]; then
        log "tests: all (CPU and GPU)"
        SLOTHSHARP_NATIVE_PATH="$lib" run_tests_direct "$tests" "$out/tests-all.log" || rc=1
        log "tests: GPU kernels against the compute_75 PTX build (JIT on this GPU, __CUDA_ARCH__ = 750)"
        SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 run_tests_direct "$tests" "$out/tests-sm75.log" --filter "TestCategory=Gpu" || rc=1
    fi
    if [ "${SLOTHSHARP_SANITIZE:-1}" = 1 ]; then
        for tool in memcheck racecheck; do
            log "tests: GPU kernel tests under compute-sanitizer --tool $tool"
            SLOTHSHARP_NATIVE_PATH="$lib" timeout "${SLOTHSHARP_SANITIZE_TIMEOUT:-240}" compute-sanitizer --tool "$tool" \
                --target-processes all --kernel-name kns=nf4_dequantize --kernel-name kns=cross_entropy_kernel --error-exitcode 97 \
                dotnet "$tests" --no-progress --filter "TestCategory=Sanitize&TestCategory=Gpu" > "$out/sanitizer-$tool.log" 2>&1 \
                && echo "compute-sanitizer $tool: clean" || { echo "compute-sanitizer $tool: FAILED (exit $?)"; rc=1; }
            grep -E "ERROR SUMMARY|passed|failed" "$out/sanitizer-$tool.log" | tail -3 || true
        done
    fi
    if [ "${SLOTHSHARP_BENCH:-1}" = 1 ]; then
        log "benchmarks"
        SLOTHSHARP_NATIVE_PATH="$lib" dotnet "$x/apps/SlothSharp.Bench/SlothSharp.Bench.dll" --results "$out" "$@" 2>&1 \
            | tee "$out/bench.log" | grep -vE '^(Overhead|Workload|// )' | tail -80 || rc=1
    fi
    if [ "${SLOTHSHARP_DEMO:-0}" = 1 ]; then
        log "demo: QLoRA Llama on CUDA (naive vs fused vs chunked)"
        SLOTHSHARP_NATIVE_PATH="$lib" dotnet "$x/apps/sloth/sloth.dll" demo --device cuda --out "$out/demo" ${SLOTHSHARP_DEMO_ARGS:-} 2>&1 \
            | tee "$out/demo.log" | grep -vE '(tok/s|: [0-9]+%)$' | tail -20 || rc=1
    fi
    return $rc
}

run_tests_direct() {  # on the GPU machine (Ubuntu 24.04: libstdc++ is new enough, no chroot)
    local dll="$1" log="$2"; shift 2
    local rc=0
    set +e
    dotnet "$dll" --no-progress "$@" > "$log" 2>&1
    rc=$?
    set -e
    grep -E "^\s*(failed|Failed|error)" "$log" | head -40 || true
    cp "$log" "$log.tmp"
    summarize_tests "$log.tmp" "$rc"
}

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

verb="${1:-help}"; shift || true
case "$verb" in
    native) cmd_native "$@" ;;
    bindings) cmd_bindings "$@" ;;
    build) cmd_build "$@" ;;
    test) cmd_test "$@" ;;
    demo) cmd_demo "$@" ;;
    bench) cmd_bench "$@" ;;
    pack) cmd_pack "$@" ;;
    gpu-bundle) cmd_gpu_bundle "$@" ;;
    gpu-run) cmd_gpu_run "$@" ;;
    help|-h|--help) usage ;;
    *) usage; die "unknown verb '$verb'" ;;
esac
