// Helpers shared by the CUDA backend: error mapping and a guard that selects a device for one call and restores
// the caller's current device afterwards (TorchSharp and the user keep their own device selection).
#pragma once
#include "../src/backends.h"
#include "../src/status.h"
#include "../src/validate.h"

#include <cuda_runtime.h>

#include <type_traits>

namespace sloth::cuda {

inline sloth_status cuda_fail(const char* fn, const char* what, cudaError_t err) {
    return fail(SLOTH_ERROR_CUDA, "%s: %s failed: %s (%s)", fn, what, cudaGetErrorString(err), cudaGetErrorName(err));
}

#define SLOTH_CUDA_CHECK(fn, call)                                          \
    do {                                                                    \
        const cudaError_t sloth_e_ = (call);                                \
        if (sloth_e_ != cudaSuccess) return ::sloth::cuda::cuda_fail(fn, #call, sloth_e_); \
    } while (0)

// Every launch is followed by this: a bad configuration or a sticky earlier fault surfaces here, not later.
#define SLOTH_LAUNCH_CHECK(fn, kernel_name)                                 \
    do {                                                                    \
        const cudaError_t sloth_e_ = cudaGetLastError();                    \
        if (sloth_e_ != cudaSuccess) return ::sloth::cuda::cuda_fail(fn, "launch of " kernel_name, sloth_e_); \
    } while (0)

class DeviceGuard {
  public:
    DeviceGuard() = default;
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;
    // Checks that `device` exists and makes it current.
    sloth_status enter(const char* fn, int32_t device) {
        int count = 0;
        const cudaError_t e = cudaGetDeviceCount(&count);
        if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || count == 0) {
            cudaGetLastError();
            return fail(SLOTH_ERROR_NO_CUDA, "%s: CUDA device %d was asked for, but no CUDA device is usable (%s)", fn,
                        device, cudaGetErrorString(e));
        }
        SLOTH_CUDA_CHECK(fn, e);
        if (device < 0 || device >= count)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: device = %d, but this machine has %d CUDA device(s)", fn,
                        device, count);
        SLOTH_CUDA_CHECK(fn, cudaGetDevice(&previous_));
        if (previous_ != device) {
            SLOTH_CUDA_CHECK(fn, cudaSetDevice(device));
            switched_ = true;
        }
        return SLOTH_OK;
    }
    ~DeviceGuard() {
        if (switched_) cudaSetDevice(previous_);
    }

  private:
    int previous_ = 0;
    bool switched_ = false;
};

// The body of every CUDA entry point: makes `device` current for the call, then runs
// `launch(std::integral_constant<int, kDtype>{}, stream)` with the kernel's compile-time dtype (bf16, f16; anything
// else is f32: the exports validated the dtype). One switch, so every kernel covers the same dtypes.
template <typename Launch>
sloth_status launch_for_dtype(const char* fn, int32_t device, void* stream, sloth_dtype dtype, Launch&& launch) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    const auto s = static_cast<cudaStream_t>(stream);
    switch (dtype) {
        case SLOTH_DTYPE_BF16: return launch(std::integral_constant<int, SLOTH_DTYPE_BF16>{}, s);
        case SLOTH_DTYPE_F16: return launch(std::integral_constant<int, SLOTH_DTYPE_F16>{}, s);
        default: return launch(std::integral_constant<int, SLOTH_DTYPE_F32>{}, s);
    }
}

// One launch covers at most 2^31 - 1 blocks in x: more rows than that is an argument error, not a CUDA failure.
// ---- Programmatic dependent launch (PDL, sm_90+), used by the decoding engine's kernels.
// A decode step at batch 1 is ~150 small kernels, each bound by latency (launch, first DRAM round trip, barriers),
// not by bandwidth. Launched with cudaLaunchAttributeProgrammaticStreamSerialization, a kernel may start while its
// predecessor still runs: its blocks request what never changes during a step (weights, norm weights, tables) and
// then block in grid_dependency_wait() until the predecessor grid has completed and its writes are visible; only
// then do they read activations or write anything. Each kernel calls allow_dependent_launch() right after its wait,
// so the next kernel is launched (and prefetches its weights) while this one computes; one kernel ahead at most.
// Correctness never rests on the trigger: the wait covers the whole predecessor grid (and, transitively, every grid
// before it). Both instructions are no-ops for a kernel launched without the attribute, and compiled out below
// sm_90, so the same kernels serve plain launches, tests and the T4 build.
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Where a decode kernel triggers its dependents: after its wait (above), or on entry with kEarlyDependentLaunch.
// Round 30 found the batch-1 step bound by each kernel's dependent round trips after its wait, with the next kernel's
// weight loads overlapping one kernel at most. Triggered on entry, kernels launch as far ahead as residency allows,
// each issuing its weight loads and then waiting. No deadlock: a dependent grid launches only once every block of its
// predecessor has started, so the oldest unfinished kernel is always wholly resident. The embedding keeps the trigger
// after its wait (as does the increment): the kernels after it read the cache length and positions
// before their waits, which the previous step's increment writes. EXPERIMENTAL, off: not yet timed on a GPU (round
// 32 landed it switched off; tools/gpu-steps/lease-r32-1.sh builds a library with it on).
constexpr bool kEarlyDependentLaunch = false;

// First statement of a decode kernel that may trigger on entry.
__device__ __forceinline__ void launch_dependents_early() {
    if constexpr (kEarlyDependentLaunch) allow_dependent_launch();
}
// Right after that kernel's grid_dependency_wait().
__device__ __forceinline__ void launch_dependents_after_wait() {
    if constexpr (!kEarlyDependentLaunch) allow_dependent_launch();
}

// Whether launch_kernel() launches with the PDL attribute on this thread (set by the decoder around a step through
// set_programmatic_launch, backends.h; off by default, so kernels called on their own launch plainly).
bool programmatic_launch_on();

// kernel<<<grid, block, smem, stream>>>(args...), with the PDL attribute when programmatic_launch_on(), as a grid of
// thread-block clusters of (1, cluster_y, 1) blocks when cluster_y > 0 (sm_90+ code only; the grid's y a multiple of
// cluster_y). Only kernels that call grid_dependency_wait() before touching data of earlier kernels may be launched
// through this. Returns the launch's error.
template <class... Params, class... Args>
cudaError_t launch_kernel_cluster(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, unsigned cluster_y,
                                  cudaStream_t stream, Args&&... args) {
    const bool programmatic = programmatic_launch_on();
    if (!programmatic && cluster_y == 0) {
        kernel<<<grid, block, smem, stream>>>(static_cast<Args&&>(args)...);
        return cudaGetLastError();
    }
    cudaLaunchAttribute attribute[2];
    unsigned count = 0;
    if (cluster_y > 0) {
        attribute[count].id = cudaLaunchAttributeClusterDimension;
        attribute[count].val.clusterDim.x = 1;
        attribute[count].val.clusterDim.y = cluster_y;
        attribute[count].val.clusterDim.z = 1;
        ++count;
    }
    if (programmatic) {
        attribute[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attribute[count].val.programmaticStreamSerializationAllowed = 1;
        ++count;
    }
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = attribute;
    config.numAttrs = count;
    return cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...);
}

// The same without clusters.
template <class... Params, class... Args>
cudaError_t launch_kernel_smem(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                               Args&&... args) {
    return launch_kernel_cluster(kernel, grid, block, smem, 0u, stream, static_cast<Args&&>(args)...);
}

// The same without dynamic shared memory.
template <class... Params, class... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
    return launch_kernel_smem(kernel, grid, block, 0, stream, static_cast<Args&&>(args)...);
}

#define SLOTH_KERNEL_LAUNCH(fn, kernel_name, call)                          \
    do {                                                                    \
        const cudaError_t sloth_e_ = (call);                                \
        if (sloth_e_ != cudaSuccess) return ::sloth::cuda::cuda_fail(fn, "launch of " kernel_name, sloth_e_); \
    } while (0)

inline sloth_status require_one_launch(const char* fn, int64_t rows) {
    if (rows > 0x7FFFFFFF) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rows = %lld exceeds one launch", fn, (long long)rows);
    return SLOTH_OK;
}

}  // namespace sloth::cuda
