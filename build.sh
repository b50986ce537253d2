#!/usr/bin/env bash
# SlothSharp build driver. Verbs (./build.sh help):
#   native             build libslothsharp.so with CMake (CUDA kernels when nvcc is found) into artifacts/native
#   bindings [--check] regenerate src/Interop/Generated from native/include/slothsharp.h (--check: fail if stale)
#   build              native + dotnet build of the solution (Release)
#   test [args]        build, run the NUnit suite, print "N passed, N failed, N skipped"; args go to the test runner
#                      (e.g. --filter "FullyQualifiedName~CliErrorTests")
#   dotnet-test [args] native, then plain `dotnet test` (Microsoft Testing Platform, selected by global.json)
#   sloth ARGS...      build the native library and the CLI, run `sloth ARGS...` (exit code: the CLI's)
#   demo [options]     `sloth demo [options]`: QLoRA fine-tuning, naive vs fused loss, CSV/PNG/summary
#   bench [args]       build, run the BenchmarkDotNet suite (GPU cases need a CUDA build and a GPU)
#   pack               build, pack SlothSharp.Interop (with libslothsharp.so), SlothSharp and the `sloth` .NET tool
#                      (+ symbol packages) into artifacts/packages
#   selftest           a clone under /tmp, entered through a symlink, runs the built CLI (tools/rootfs.sh)
#   gpu-bundle         pack what the GPU machine needs into .gpu-bundle/ (runtime, apps, test data; tools/gpu.sh)
#   gpu-run OUTDIR     on the GPU machine: CUDA build, all tests (also against a compute_75-only build and under
#                      compute-sanitizer), benchmarks, optional demo and SLOTHSHARP_GPU_EXTRA; results into OUTDIR
#   gpu-aside PATH...  move tracked folders out of the checkout for one GPU call (64 MiB cap); gpu-back: restore
#
# Processes that load TorchSharp (test, dotnet-test, sloth, demo, bench) run through tools/rootfs.sh's run_torch: on
# hosts whose libstdc++ predates GCC 13 (Debian 12) inside a Debian 13 userland it creates once (needs root).
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd -P)"
CONFIG="${CONFIG:-Release}"
TFM=net10.0
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

. "$ROOT/tools/common.sh"
. "$ROOT/tools/rootfs.sh"
. "$ROOT/tools/dev.sh"
. "$ROOT/tools/gpu.sh"

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

verb="${1:-help}"; shift || true
case "$verb" in
    native) cmd_native "$@" ;;
    bindings) cmd_bindings "$@" ;;
    build) cmd_build "$@" ;;
    test) cmd_test "$@" ;;
    dotnet-test) cmd_dotnet_test "$@" ;;
    sloth) cmd_sloth "$@" ;;
    demo) cmd_demo "$@" ;;
    bench) cmd_bench "$@" ;;
    pack) cmd_pack "$@" ;;
    selftest) rootfs_selftest "$@" ;;
    gpu-bundle) cmd_gpu_bundle "$@" ;;
    gpu-run) cmd_gpu_run "$@" ;;
    gpu-aside) cmd_gpu_aside "$@" ;;
    gpu-back) cmd_gpu_back "$@" ;;
    help|-h|--help) usage ;;
    *) usage; die "unknown verb '$verb'" ;;
esac
