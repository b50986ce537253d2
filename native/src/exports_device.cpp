// Device queries: thin wrappers over the CUDA backend (or its stub in a CPU-only build).
#include "backends.h"
#include "validate.h"

using namespace sloth;

extern "C" {

SLOTH_API sloth_status sloth_built_with_cuda(int32_t* out) {
    SLOTH_CHECK(require_ptr(__func__, out, "out"));
    *out = cuda::built() ? 1 : 0;
    return SLOTH_OK;
}

SLOTH_API sloth_status sloth_cuda_available(int32_t* out) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        return cuda::available(out);
    });
}

SLOTH_API sloth_status sloth_cuda_device_count(int32_t* out) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        return cuda::device_count(out);
    });
}

SLOTH_API sloth_status sloth_cuda_device_name(int32_t device, char* name, int32_t capacity) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, name, "name"));
        if (capacity < 1) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: capacity = %d must be >= 1", fn, capacity);
        return cuda::device_name(fn, device, name, capacity);
    });
}

SLOTH_API sloth_status sloth_cuda_compute_capability(int32_t device, int32_t* major, int32_t* minor) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, major, "major"));
        SLOTH_CHECK(require_ptr(fn, minor, "minor"));
        return cuda::compute_capability(fn, device, major, minor);
    });
}

SLOTH_API sloth_status sloth_cuda_mem_info(int32_t device, int64_t* free_bytes, int64_t* total_bytes) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, free_bytes, "free_bytes"));
        SLOTH_CHECK(require_ptr(fn, total_bytes, "total_bytes"));
        return cuda::mem_info(fn, device, free_bytes, total_bytes);
    });
}

SLOTH_API sloth_status sloth_cuda_kernel_arch(int32_t device, int32_t* arch) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, arch, "arch"));
        return cuda::kernel_arch(fn, device, arch);
    });
}

SLOTH_API sloth_status sloth_cuda_synchronize(int32_t device) {
    const char* fn = __func__;
    return guarded(fn, [&] { return cuda::synchronize(fn, device); });
}

SLOTH_API sloth_status sloth_cuda_profiler(int32_t device, int32_t collect) {
    const char* fn = __func__;
    return guarded(fn, [&] { return cuda::profiler(fn, device, collect != 0); });
}

// ---- Streams and events ----

SLOTH_API sloth_status sloth_cuda_stream_create(int32_t device, void** stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, stream, "stream"));
        *stream = nullptr;
        return cuda::stream_create(fn, device, stream);
    });
}

SLOTH_API sloth_status sloth_cuda_stream_destroy(int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] { return cuda::stream_destroy(fn, device, stream); });
}

SLOTH_API sloth_status sloth_cuda_event_create(int32_t device, void** event) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, event, "event"));
        *event = nullptr;
        return cuda::event_create(fn, device, event);
    });
}

SLOTH_API sloth_status sloth_cuda_event_destroy(int32_t device, void* event) {
    const char* fn = __func__;
    return guarded(fn, [&] { return cuda::event_destroy(fn, device, event); });
}

SLOTH_API sloth_status sloth_cuda_event_record(int32_t device, void* event, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, event, "event"));
        return cuda::event_record(fn, device, event, stream);
    });
}

SLOTH_API sloth_status sloth_cuda_stream_wait_event(int32_t device, void* stream, void* event) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, event, "event"));
        return cuda::stream_wait_event(fn, device, stream, event);
    });
}

}  // extern "C"
