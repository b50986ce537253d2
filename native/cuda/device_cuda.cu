// Device queries over the CUDA runtime (what ManagedCuda would otherwise provide to the managed side).
#include "cuda_common.cuh"

#include <cuda_profiler_api.h>

#include <algorithm>
#include <cstring>

namespace sloth::cuda {

namespace {
__global__ void report_arch_kernel(int32_t* out) {
#ifdef __CUDA_ARCH__
    *out = __CUDA_ARCH__;
#else
    (void)out;
#endif
}
}  // namespace

bool built() { return true; }

sloth_status device_count(int32_t* out) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();  // no driver or no device: "no CUDA", not a failure
        count = 0;
    }
    *out = count;
    return SLOTH_OK;
}

sloth_status available(int32_t* out) {
    int32_t count = 0;
    device_count(&count);
    *out = count > 0 ? 1 : 0;
    return SLOTH_OK;
}

sloth_status device_name(const char* fn, int32_t device, char* name, int32_t capacity) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    cudaDeviceProp prop{};
    SLOTH_CUDA_CHECK(fn, cudaGetDeviceProperties(&prop, device));
    const size_t len = std::min(std::strlen(prop.name), static_cast<size_t>(capacity - 1));
    std::memcpy(name, prop.name, len);
    name[len] = '\0';
    return SLOTH_OK;
}

sloth_status compute_capability(const char* fn, int32_t device, int32_t* major, int32_t* minor) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, device));
    SLOTH_CUDA_CHECK(fn, cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor, device));
    return SLOTH_OK;
}

sloth_status mem_info(const char* fn, int32_t device, int64_t* free_bytes, int64_t* total_bytes) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    size_t f = 0, t = 0;
    SLOTH_CUDA_CHECK(fn, cudaMemGetInfo(&f, &t));
    *free_bytes = static_cast<int64_t>(f);
    *total_bytes = static_cast<int64_t>(t);
    return SLOTH_OK;
}

sloth_status kernel_arch(const char* fn, int32_t device, int32_t* arch) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    int32_t* d_arch = nullptr;
    SLOTH_CUDA_CHECK(fn, cudaMalloc(&d_arch, sizeof(int32_t)));
    report_arch_kernel<<<1, 1>>>(d_arch);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaMemcpy(arch, d_arch, sizeof(int32_t), cudaMemcpyDeviceToHost);
    cudaFree(d_arch);
    if (e != cudaSuccess) return cuda_fail(fn, "report_arch_kernel", e);
    return SLOTH_OK;
}

sloth_status run_on_device(const char* fn, int32_t device, sloth_status (*body)(void*), void* ctx) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    return body(ctx);
}

sloth_status synchronize(const char* fn, int32_t device) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaDeviceSynchronize());
    return SLOTH_OK;
}

sloth_status profiler(const char* fn, int32_t device, bool collect) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, collect ? cudaProfilerStart() : cudaProfilerStop());
    return SLOTH_OK;
}

// ---- Streams and events: a side stream beside TorchSharp's legacy default stream, ordered by events. ----

sloth_status stream_create(const char* fn, int32_t device, void** stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    cudaStream_t s = nullptr;
    SLOTH_CUDA_CHECK(fn, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *stream = static_cast<void*>(s);
    return SLOTH_OK;
}

sloth_status stream_destroy(const char* fn, int32_t device, void* stream) {
    if (stream == nullptr) return SLOTH_OK;
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaStreamDestroy(static_cast<cudaStream_t>(stream)));
    return SLOTH_OK;
}

sloth_status event_create(const char* fn, int32_t device, void** event) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    cudaEvent_t e = nullptr;
    SLOTH_CUDA_CHECK(fn, cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    *event = static_cast<void*>(e);
    return SLOTH_OK;
}

sloth_status event_destroy(const char* fn, int32_t device, void* event) {
    if (event == nullptr) return SLOTH_OK;
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaEventDestroy(static_cast<cudaEvent_t>(event)));
    return SLOTH_OK;
}

sloth_status event_record(const char* fn, int32_t device, void* event, void* stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
    return SLOTH_OK;
}

sloth_status stream_wait_event(const char* fn, int32_t device, void* stream, void* event) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event), 0));
    return SLOTH_OK;
}

}  // namespace sloth::cuda
