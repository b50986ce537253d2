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
