# The GPU machine: gpu-bundle (on this machine) packs what it lacks; gpu-run (there) builds the CUDA library and runs
# the tests, the compute_75 variant, compute-sanitizer, the benchmarks and optionally the demo.
# Sourced by build.sh (needs tools/common.sh and tools/dev.sh, ROOT, CONFIG, TFM).

# gpu-bundle: the .NET runtime (no SDK there), the built test, benchmark and CLI apps without the CPU libtorch binaries
# (it has PyTorch's CUDA libtorch), with the tests' data folder (copied next to the test assembly by the build).
# Sources travel with the tree. Result: .gpu-bundle/bundle.tar.xz.
cmd_gpu_bundle() {
    cmd_build
    local b="$ROOT/.gpu-bundle" app dir name
    rm -rf "$b"; mkdir -p "$b/stage/apps"
    tar -C "$(dotnet_root)" -cJf "$b/stage/dotnet-runtime.tar.xz" dotnet host shared/Microsoft.NETCore.App
    for app in tests:SlothSharp.Tests bench:SlothSharp.Bench src/Cli:sloth; do
        dir="$ROOT/${app%%:*}/bin/$CONFIG/$TFM" name="${app##*:}"
        mkdir -p "$b/stage/apps/$name/runtimes/linux-x64/native"
        # The managed assemblies and data files; of the native ones only the linux-x64 folder, filtered below.
        # (./linux-x64: what `pack` builds for the .NET tool, with the CPU libtorch; not part of the app.)
        # The tests' data folder is not packed: the repository travels with the bundle, and gpu-run copies
        # tests/data next to the test assembly there (the tree that travels is capped at 64 MiB).
        (cd "$dir" && find . -type f ! -path './runtimes/*' ! -path './linux-x64/*' ! -path './data/*' -print0 | xargs -0 cp --parents -t "$b/stage/apps/$name")
        # linux-x64 native assets (LibTorchSharp's glue, Skia for the plots) but not the CPU libtorch.
        find "$dir/runtimes/linux-x64/native" -maxdepth 1 -type f \
            ! -name 'libtorch*' ! -name 'libc10*' ! -name 'libgomp*' ! -name 'libshm*' ! -name 'libbackend_with_compiler*' \
            ! -name 'libjitbackend*' ! -name 'libnnapi*' ! -name 'libaoti*' -exec cp -t "$b/stage/apps/$name/runtimes/linux-x64/native/" {} +
    done
    [ -f "$ROOT/tests/data/README.md" ] || die "the tests' data folder (tests/data) is missing"
    [ -f "$b/stage/apps/sloth/sloth.dll" ] || die "the CLI is missing from the bundle"
    # The three apps share most assemblies and native assets: a file identical to the test app's copy becomes a hard
    # link to it, which tar stores once (the tree that travels is capped at 64 MiB). Windows-only folders go.
    rm -rf "$b/stage/apps/SlothSharp.Bench/"{arm64,x64,x86}
    local f rel
    for name in SlothSharp.Bench sloth; do
        while IFS= read -r -d '' f; do
            rel="${f#"$b/stage/apps/$name/"}"
            [ -f "$b/stage/apps/SlothSharp.Tests/$rel" ] && cmp -s "$f" "$b/stage/apps/SlothSharp.Tests/$rel" \
                && ln -f "$b/stage/apps/SlothSharp.Tests/$rel" "$f"
        done < <(find "$b/stage/apps/$name" -type f -print0)
    done
    { git -C "$ROOT" rev-parse HEAD; git -C "$ROOT" diff --quiet HEAD || echo "(+ uncommitted changes)"; } > "$b/stage/commit.txt" 2>/dev/null || true
    # -9: a 64 MiB dictionary, so the apps' shared assemblies compress once (the tree that travels is capped at 64 MiB).
    XZ_OPT=-9 tar -C "$b/stage" -cJf "$b/bundle.tar.xz" . && rm -rf "$b/stage"
    log "GPU bundle: $(du -sh "$b" | cut -f1) in $b (carry .gpu-bundle; on the GPU machine: ./build.sh gpu-run \$OUT)"
}

# The names of every CUDA kernel the library defines (__global__ functions in native/cuda), for compute-sanitizer's
# kernel filter: libtorch's own kernels stay unsanitized (slow, and not ours), every kernel of ours is checked.
cuda_kernel_names() {
    cat "$ROOT"/native/cuda/*.cu "$ROOT"/native/cuda/*.cuh 2>/dev/null | perl -0777 -ne \
        'while (/__global__\s+(?:(?:void|static|inline)\s+|__launch_bounds__\s*\([^)]*\)\s*)*(\w+)\s*(?:<[^>(]*>\s*)?\(/g) { print "$1\n" }' \
        | sort -u
}

# check_kernel_filter LIB NAME...: every kernel in LIB's device code (cuobjdump) must match one of the names, so a
# kernel the source scan missed cannot silently go unsanitized.
check_kernel_filter() {
    local lib="$1"; shift
    local fns fn n ok=0
    fns="$(cuobjdump -res-usage "$lib" 2>/dev/null | grep -oE 'Function [^ :]+' | awk '{print $2}' | sort -u)"
    [ -n "$fns" ] || { log "warning: cuobjdump listed no kernels in $lib; the filter could not be cross-checked"; return 0; }
    while IFS= read -r fn; do
        local matched=0
        for n in "$@"; do case "$fn" in *"$n"*) matched=1; break ;; esac; done
        [ "$matched" = 1 ] || { log "kernel $fn is in the library but not in the sanitizer filter"; ok=1; }
    done <<< "$fns"
    return $ok
}

# gpu-run OUTDIR [bench args]: on the GPU machine (Ubuntu 24.04, libstdc++ new enough: no userland needed).
# Environment: SLOTHSHARP_TESTS / SLOTHSHARP_SANITIZE / SLOTHSHARP_BENCH (default 1), SLOTHSHARP_SM75 (default 1; 0 skips
# the compute_75 PTX variant's build, a minute of a call that does not test it), SLOTHSHARP_DEMO (default 0,
# SLOTHSHARP_DEMO_ARGS), SLOTHSHARP_SANITIZE_TIMEOUT (s, default 240), SLOTHSHARP_LIBTORCH (libtorch folder; default
# the python3 torch package's), SLOTHSHARP_GPU_EXTRA (a script run last, see below).
cmd_gpu_run() {
    local out="${1:?usage: gpu-run OUTDIR}"; shift || true
    mkdir -p "$out"; out="$(cd "$out" && pwd -P)"
    local b="$ROOT/.gpu-bundle" x=/tmp/slothsharp-gpu
    [ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
    rm -rf "$x"; mkdir -p "$x/dotnet"
    tar -C "$x" -xJf "$b/bundle.tar.xz"
    tar -C "$x/dotnet" -xJf "$x/dotnet-runtime.tar.xz"
    cp -r "$ROOT/tests/data" "$x/apps/SlothSharp.Tests/data"
    export DOTNET_ROOT="$x/dotnet" PATH="$x/dotnet:$PATH"
    local torchlib
    torchlib="${SLOTHSHARP_LIBTORCH:-$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')}"
    export LD_LIBRARY_PATH="$torchlib:${LD_LIBRARY_PATH:-}"
    { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: failed";
      nvcc --version 2>/dev/null | tail -2 || echo "nvcc: not found";
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
    local rc=0
    if [ "${SLOTHSHARP_SM75:-1}" = 1 ]; then
        log "compute_75-only (PTX) variant, to run the T4 code path on this GPU"
        { cmake -S "$ROOT/native" -B "$ROOT/build/native-sm75" -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DSLOTH_CUDA_ARCHITECTURES=75-virtual -DSLOTH_WERROR=$werror -DCMAKE_INSTALL_PREFIX="$ROOT/build/sm75-install" \
          && cmake --build "$ROOT/build/native-sm75" && cmake --install "$ROOT/build/native-sm75"; } >> "$out/native-build.log" 2>&1 \
          || { log "compute_75 build FAILED (native-build.log)"; rc=1; }
    else
        log "compute_75 variant not built (SLOTHSHARP_SM75=0)"
    fi
    local lib75="$ROOT/build/sm75-install/runtimes/linux-x64/native/libslothsharp.so"
    cuobjdump --list-elf --list-ptx "$lib75" >> "$out/cuobjdump.txt" 2>&1 || true

    local tests="$x/apps/SlothSharp.Tests/SlothSharp.Tests.dll"
    if [ "${SLOTHSHARP_TESTS:-1}" = 1 ]; then
        log "tests: all (CPU and GPU)"
        SLOTHSHARP_NATIVE_PATH="$lib" run_tests_direct "$tests" "$out/tests-all.log" || rc=1
        log "tests: GPU kernels against the compute_75 PTX build (JIT on this GPU, __CUDA_ARCH__ = 750)"
        [ "${SLOTHSHARP_SM75:-1}" = 1 ] && { SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 run_tests_direct "$tests" "$out/tests-sm75.log" --filter "TestCategory=Gpu" || rc=1; }
    fi
    if [ "${SLOTHSHARP_SANITIZE:-1}" = 1 ]; then
        local kernels filter=() k
        mapfile -t kernels < <(cuda_kernel_names)
        for k in "${kernels[@]}"; do filter+=(--kernel-name "kns=$k"); done
        echo "sanitized kernels (every __global__ in native/cuda): ${kernels[*]}" | tee -a "$out/environment.txt"
        check_kernel_filter "$lib" "${kernels[@]}" || { log "sanitizer kernel filter incomplete"; rc=1; }
        for tool in memcheck racecheck; do
            log "tests: GPU kernel tests under compute-sanitizer --tool $tool"
            SLOTHSHARP_NATIVE_PATH="$lib" timeout "${SLOTHSHARP_SANITIZE_TIMEOUT:-240}" compute-sanitizer --tool "$tool" \
                --target-processes all "${filter[@]}" --error-exitcode 97 \
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
        # shellcheck disable=SC2086  # SLOTHSHARP_DEMO_ARGS is a list of words
        SLOTHSHARP_NATIVE_PATH="$lib" dotnet "$x/apps/sloth/sloth.dll" demo --device cuda --out "$out/demo" ${SLOTHSHARP_DEMO_ARGS:-} 2>&1 \
            | tee "$out/demo.log" | grep -vE '(tok/s|: [0-9]+%)$' | tail -20 || rc=1
    fi
    # SLOTHSHARP_GPU_EXTRA=script: extra steps without editing this file. It runs last, from the repository root,
    # with DOTNET_ROOT, PATH, LD_LIBRARY_PATH as above, SLOTHSHARP_NATIVE_PATH (the CUDA library), SLOTHSHARP_APPS
    # (the bundle's apps: SlothSharp.Tests/, SlothSharp.Bench/, sloth/), OUTDIR (results folder) and OUTDIR as $1.
    if [ -n "${SLOTHSHARP_GPU_EXTRA:-}" ]; then
        log "extra steps: $SLOTHSHARP_GPU_EXTRA"
        (cd "$ROOT" && SLOTHSHARP_NATIVE_PATH="$lib" SLOTHSHARP_APPS="$x/apps" OUTDIR="$out" bash "$SLOTHSHARP_GPU_EXTRA" "$out") \
            2>&1 | tee "$out/extra.log" || rc=1
    fi
    return $rc
}

run_tests_direct() {  # run_tests_direct DLL LOG [args]: the test executable without run_torch; summary as `test`
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

# gpu-aside PATH... / gpu-back: the tree that travels to the GPU machine is capped at 64 MiB (tracked files included),
# and the tracked test data plus the bundle exceed it. gpu-aside moves the named tracked folders (e.g. tests/data/tokenizers)
# out of the checkout, to ~/.cache/slothsharp/gpu-aside/, for one call; gpu-back puts them back. Between the two,
# `git commit -a` or `git add -A` would record their deletion: gpu-aside refuses to run twice, and gpu-back checks
# that the index still has every file it restores.
cmd_gpu_aside() {
    local stash="${SLOTHSHARP_GPU_ASIDE:-$HOME/.cache/slothsharp/gpu-aside}" p
    [ $# -gt 0 ] || die "usage: gpu-aside PATH... (tracked folders of this checkout, e.g. tests/data/tokenizers)"
    [ ! -e "$stash/list" ] || die "folders are already aside ($(tr '\n' ' ' < "$stash/list")): ./build.sh gpu-back first"
    mkdir -p "$stash"
    for p in "$@"; do
        [ -d "$ROOT/$p" ] || die "$p: not a folder of this checkout"
        git -C "$ROOT" ls-files --error-unmatch "$p" > /dev/null 2>&1 || die "$p: not tracked by git"
    done
    for p in "$@"; do
        mkdir -p "$stash/tree/$(dirname "$p")"
        mv "$ROOT/$p" "$stash/tree/$p"
        echo "$p" >> "$stash/list"
    done
    log "aside: $* (do not commit until ./build.sh gpu-back); the tree now holds $(git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 du -cb 2>/dev/null) | tail -1 | cut -f1) bytes of tracked files"
}

cmd_gpu_back() {
    local stash="${SLOTHSHARP_GPU_ASIDE:-$HOME/.cache/slothsharp/gpu-aside}" p
    [ -e "$stash/list" ] || { log "nothing is aside"; return 0; }
    while IFS= read -r p; do
        [ -e "$ROOT/$p" ] && die "$p exists in the checkout again; move $stash/tree/$p back by hand"
        mkdir -p "$ROOT/$(dirname "$p")"
        mv "$stash/tree/$p" "$ROOT/$p"
        git -C "$ROOT" diff --quiet -- "$p" || log "warning: $p differs from the index (was its deletion committed? git status)"
    done < "$stash/list"
    rm -f "$stash/list"; rm -rf "$stash/tree"
    log "back: every folder set aside is in the checkout again"
}
