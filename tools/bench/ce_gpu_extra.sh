#!/usr/bin/env bash
# Issue 15 extra GPU steps (phase 2), for SLOTHSHARP_GPU_EXTRA (tools/gpu.sh runs it last, from the repository root,
# with SLOTHSHARP_APPS, SLOTHSHARP_NATIVE_PATH, LD_LIBRARY_PATH and OUTDIR set). Everything goes to OUTDIR/ce/ and is
# packed into OUTDIR/ce.tar.gz (a GPU run returns at most 8 files):
#   1. the ce-sweep suite (its DefaultVariants: the default, tuned vs TorchSharp GEMMs, budgets, profile),
#      memory children (ce/ce-sweep.md, .json, .log),
#   2. the loss tests on the GPU (FusedVariantTests, LossTests, ChunkLossTests, GRPO, modules, autograd base),
#      and the CE kernel test against the compute_75 PTX build,
#   3. the Python anchors in the same lease: naive PyTorch and Cut Cross-Entropy (no probe unless CE_ANCHOR_ARGS=--probe),
#   4. with CE_EXTRA_SANITIZE=1: compute-sanitizer memcheck on the CE kernel test (last; up to CE_SANITIZE_TIMEOUT=150 s;
#      gpu-run's own sanitizer step covers the same test, which is in the Sanitize category).
# CE_EXTRA_SWEEP=0 / CE_EXTRA_TESTS=0 / CE_EXTRA_ANCHORS=0 skip a step; CE_ANCHOR_METHODS (default naive,cce);
# CE_EXTRA_SWEEP2_ENV / CE_EXTRA_SWEEP2_VARIANTS: a second sweep under other environment variables (ce/sweep2/);
# SLOTH_CE_VARIANTS, SLOTH_CE_MEMORY_VARIANTS, SLOTH_CE_ITERS pass through to the sweep.
set -uo pipefail
root="${OUTDIR:-${1:?usage: ce_gpu_extra.sh OUTDIR}}"
out="$root/ce"
mkdir -p "$out"
rc=0
t0=$(date +%s)
# The bundle's commit (gpu-run unpacks commit.txt beside the apps), for the anchors' report.
[ -f "$SLOTHSHARP_APPS/../commit.txt" ] && export SLOTHSHARP_COMMIT="$(head -c 12 "$SLOTHSHARP_APPS/../commit.txt")"
if [ "${CE_EXTRA_SWEEP:-1}" = 1 ]; then
    echo "== ce-sweep"
    start=$(date +%s)
    # SM clock, power and throttle reasons every 200 ms during the sweep (is the steady state power-limited?).
    clocks_pid=""
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
            --format=csv -lms 200 > "$out/clocks.csv" 2>&1 &
        clocks_pid=$!
    fi
    dotnet "$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll" --suite ce-sweep --results "$out" > "$out/ce-sweep.log" 2>&1 || rc=1
    if [ -n "${CE_EXTRA_SWEEP2_ENV:-}" ]; then
        # A second sweep in other conditions (e.g. CE_EXTRA_SWEEP2_ENV="SLOTHSHARP_GEMM_TUNE_MS=0": the GEMM tuner's
        # short timing) over CE_EXTRA_SWEEP2_VARIANTS, without memory children, into ce/sweep2/.
        mkdir -p "$out/sweep2"
        echo "$CE_EXTRA_SWEEP2_ENV" > "$out/sweep2/environment.txt"
        # shellcheck disable=SC2086  # a list of NAME=value words
        env $CE_EXTRA_SWEEP2_ENV SLOTH_CE_MEMORY=0 SLOTH_CE_VARIANTS="${CE_EXTRA_SWEEP2_VARIANTS:-naive,fused,fused-profile}" \
            dotnet "$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll" --suite ce-sweep --results "$out/sweep2" \
            > "$out/sweep2/ce-sweep.log" 2>&1 || rc=1
        grep -E "^\| " "$out/sweep2/ce-sweep.md" | grep -v piece | head -8
    fi
    [ -n "$clocks_pid" ] && kill "$clocks_pid" 2> /dev/null
    grep -E "^\| |^## |^ce-sweep|^memory " "$out/ce-sweep.log" | tail -70
    echo "ce-sweep: $(( $(date +%s) - start )) s"
fi
if [ "${CE_EXTRA_TESTS:-1}" = 1 ]; then
    echo "== loss tests on the GPU"
    start=$(date +%s)
    tests="$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll"
    dotnet "$tests" --no-progress \
        --filter "FullyQualifiedName~SlothSharp.Tests.FusedVariantTests|FullyQualifiedName~SlothSharp.Tests.LossTests|FullyQualifiedName~SlothSharp.Tests.ChunkLossTests|FullyQualifiedName~SlothSharp.Tests.GrpoTests|FullyQualifiedName~SlothSharp.Tests.LossModuleTests|FullyQualifiedName~SlothSharp.Tests.ChunkOptionsTests|FullyQualifiedName~SlothSharp.Tests.AutogradBaseTests|FullyQualifiedName~SlothSharp.Tests.BackwardErrorTests|FullyQualifiedName~SlothSharp.Tests.TunedGemm" \
        > "$out/ce-loss-tests.log" 2>&1 || rc=1
    grep -E "total:|failed:|succeeded:|skipped:" "$out/ce-loss-tests.log" | tail -4
    grep -E "^failed " "$out/ce-loss-tests.log" | head -20
    lib75="$PWD/build/sm75-install/runtimes/linux-x64/native/libslothsharp.so"
    if [ -f "$lib75" ]; then
        echo "-- CE kernel test on the compute_75 PTX build"
        SLOTHSHARP_NATIVE_PATH="$lib75" SLOTHSHARP_EXPECT_ARCH=750 dotnet "$tests" --no-progress \
            --filter "FullyQualifiedName~FusedVariantTests&TestCategory=Gpu" > "$out/ce-tests-sm75.log" 2>&1 || rc=1
        grep -E "total:|failed:|succeeded:" "$out/ce-tests-sm75.log" | tail -3
        grep -E "^failed " "$out/ce-tests-sm75.log" | head -10
    else
        echo "no compute_75 build at $lib75: skipped"
    fi
    echo "loss tests: $(( $(date +%s) - start )) s"
fi
if [ "${CE_EXTRA_ANCHORS:-1}" = 1 ]; then
    echo "== Python anchors"
    start=$(date +%s)
    # shellcheck disable=SC2086  # CE_ANCHOR_ARGS is a list of words
    PYTHONPATH=".anchors/cce:.anchors/liger/src${PYTHONPATH:+:$PYTHONPATH}" python3 tools/bench/ce_anchors.py \
        --out "$out/ce-anchors" --methods "${CE_ANCHOR_METHODS:-naive,cce}" ${CE_ANCHOR_ARGS:-} 2>&1 \
        | tee "$out/ce-anchors.log" | grep -vE '^\{' || rc=1
    echo "anchors: $(( $(date +%s) - start )) s"
fi
if [ "${CE_EXTRA_SANITIZE:-0}" = 1 ] && command -v compute-sanitizer > /dev/null; then
    # Last, so that a run short of time loses only this: the CE kernel test under memcheck (racecheck with
    # CE_EXTRA_RACECHECK=1; the block reduction's shared-memory pattern is phase 1's, sized by the thread count).
    echo "== compute-sanitizer on the CE kernel"
    start=$(date +%s)
    tools_="memcheck"; [ "${CE_EXTRA_RACECHECK:-0}" = 1 ] && tools_="memcheck racecheck"
    for tool in $tools_; do
        timeout "${CE_SANITIZE_TIMEOUT:-150}" compute-sanitizer --tool "$tool" --target-processes all \
            --kernel-name kns=cross_entropy_kernel --error-exitcode 97 \
            dotnet "$SLOTHSHARP_APPS/SlothSharp.Tests/SlothSharp.Tests.dll" --no-progress \
            --filter "FullyQualifiedName~KernelThreadCountsAgreeWithTheCpuTwin&TestCategory=Gpu" > "$out/ce-sanitizer-$tool.log" 2>&1 \
            && echo "compute-sanitizer $tool (CE kernel): clean" || { echo "compute-sanitizer $tool (CE kernel): FAILED or timed out (exit $?)"; rc=1; }
        grep -E "ERROR SUMMARY|total:|failed:" "$out/ce-sanitizer-$tool.log" | tail -3
    done
    echo "sanitizer: $(( $(date +%s) - start )) s"
fi
echo "ce extra steps: $(( $(date +%s) - t0 )) s, rc $rc"
# One file back instead of a dozen (a GPU run returns at most 8): the folder goes once packed, unless CE_KEEP_DIR=1.
if tar -czf "$root/ce.tar.gz" -C "$root" ce; then
    echo "packed $root/ce.tar.gz ($(du -h "$root/ce.tar.gz" | cut -f1)): $(ls "$out" | tr '\n' ' ')"
    [ "${CE_KEEP_DIR:-0}" = 1 ] || rm -rf "$out"
else
    rc=1
fi
exit $rc
