# The development verbs of build.sh: native library, bindings, .NET build, tests, CLI, benchmarks, packages.
# Sourced by build.sh (needs tools/common.sh and tools/rootfs.sh, ROOT, CONFIG, TFM).

cmd_native() {
    command -v cmake >/dev/null || apt_install cmake g++
    local args=(-S "$ROOT/native" -B "$ROOT/build/native" -DCMAKE_BUILD_TYPE=Release)
    command -v ninja >/dev/null && args+=(-G Ninja)
    [ -n "${SLOTH_CUDA_ARCHITECTURES:-}" ] && args+=("-DSLOTH_CUDA_ARCHITECTURES=$SLOTH_CUDA_ARCHITECTURES")
    [ -n "${SLOTH_CUDA:-}" ] && args+=("-DSLOTH_CUDA=$SLOTH_CUDA")
    [ -n "${SLOTH_WERROR:-}" ] && args+=("-DSLOTH_WERROR=$SLOTH_WERROR")
    # Explicit checks: this function also runs inside `if !`, where `set -e` does not apply.
    cmake "${args[@]}" >/dev/null || return 1
    # Keep going past a failed file, so that one build reports every compile error (a GPU call costs minutes).
    local keep=(-- -k)
    command -v ninja >/dev/null && keep=(-- -k 0)
    cmake --build "$ROOT/build/native" -j "$(nproc)" "${keep[@]}" || return 1
    cmake --install "$ROOT/build/native" >/dev/null || return 1
    log "native library: $ROOT/artifacts/native/runtimes/linux-x64/native/libslothsharp.so"
}

cmd_bindings() {
    apt_install python3 python3-clang-14 libclang1-14
    /usr/bin/python3 "$ROOT/tools/bindgen/gen_bindings.py" "$ROOT/native/include/slothsharp.h" \
        "$ROOT/src/Interop/Generated/NativeMethods.g.cs" "$@"
}

dotnet_build() {  # dotnet_build PROJECT-OR-SOLUTION
    dotnet build "$1" -c "$CONFIG" -v quiet -nologo -clp:ErrorsOnly
}

cmd_build() {
    cmd_native
    dotnet_build "$ROOT/SlothSharp.slnx"
}

# test [args]: the NUnit executable (Microsoft Testing Platform) through run_torch; prints "N passed, N failed,
# N skipped" last. Arguments go to the runner (e.g. --filter "FullyQualifiedName~CliErrorTests").
cmd_test() {
    cmd_build
    local out rc=0
    out="$(mktemp)"
    set +e
    run_torch dotnet "$ROOT/tests/bin/$CONFIG/$TFM/SlothSharp.Tests.dll" --no-progress "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    summarize_tests "$out" "$rc"
}

# dotnet-test [args]: plain `dotnet test` (global.json selects Microsoft Testing Platform), through run_torch, so the
# same command a GCC >= 13 host runs directly is exercised here too.
cmd_dotnet_test() {
    cmd_native
    dotnet restore "$ROOT/SlothSharp.slnx" -v quiet >/dev/null  # on the host: the userland may have no network
    (cd "$ROOT" && run_torch dotnet test -c "$CONFIG" --no-restore "$@")
}

# sloth ARGS...: the `sloth` CLI with any arguments (builds the native library and the CLI first, unless
# SLOTHSHARP_SKIP_BUILD=1); its exit code is the CLI's.
cmd_sloth() {
    if [ "${SLOTHSHARP_SKIP_BUILD:-0}" != 1 ]; then
        cmd_native >/dev/null
        dotnet_build "$ROOT/src/Cli/SlothSharp.Cli.csproj"
    fi
    run_torch dotnet "$ROOT/src/Cli/bin/$CONFIG/$TFM/sloth.dll" "$@"
}

# demo [options]: `sloth demo [options]`; with a command name first, that command instead (as `sloth`).
cmd_demo() {
    if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- demo "$@"; fi
    cmd_sloth "$@"
}

cmd_bench() {
    cmd_build
    run_torch dotnet "$ROOT/bench/bin/$CONFIG/$TFM/SlothSharp.Bench.dll" "$@"
}

# pack: SlothSharp.Interop (with libslothsharp.so), SlothSharp, and the `sloth` .NET tool, with symbol packages.
cmd_pack() {
    cmd_build
    local p
    for p in src/Interop/SlothSharp.Interop.csproj src/Api/SlothSharp.csproj src/Cli/SlothSharp.Cli.csproj; do
        dotnet pack "$ROOT/$p" -c "$CONFIG" -o "$ROOT/artifacts/packages" -v quiet -nologo -clp:ErrorsOnly
    done
    # The tool's linux-x64 build lands in the CLI's usual output folder: remove it, so bundles and runs see the app only.
    rm -rf "$ROOT/src/Cli/bin/$CONFIG/$TFM/linux-x64"
    log "packages in $ROOT/artifacts/packages: $(cd "$ROOT/artifacts/packages" && ls -- *.nupkg *.snupkg | tr '\n' ' ')"
}
