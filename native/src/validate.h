// Argument checks shared by the exports. Each returns SLOTH_OK or sets the error message and returns the failure.
#pragma once
#include "status.h"

#include <cstdint>

namespace sloth {

inline bool is_pow2_in(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi && (v & (v - 1)) == 0; }

// log2 of a power of two (the kernels index blocks with shifts).
inline int log2_exact(int64_t v) {
    int l = 0;
    while ((int64_t{1} << l) < v) ++l;
    return l;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline sloth_status require_ptr(const char* fn, const void* p, const char* name) {
    return p ? SLOTH_OK : fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", fn, name);
}

inline sloth_status require_dtype(const char* fn, int dtype, const char* name) {
    if (dtype == SLOTH_DTYPE_F32 || dtype == SLOTH_DTYPE_F16 || dtype == SLOTH_DTYPE_BF16) return SLOTH_OK;
    return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: %s = %d is not a sloth_dtype (0 = f32, 1 = f16, 2 = bf16)", fn,
                name, dtype);
}

inline sloth_status require_blocksize(const char* fn, int64_t bs, const char* name) {
    if (is_pow2_in(bs, SLOTH_NF4_BLOCKSIZE_MIN, SLOTH_NF4_BLOCKSIZE_MAX)) return SLOTH_OK;
    return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: %s = %lld must be a power of two in [%d, %d]", fn, name,
                static_cast<long long>(bs), SLOTH_NF4_BLOCKSIZE_MIN, SLOTH_NF4_BLOCKSIZE_MAX);
}

inline sloth_status require_device(const char* fn, int32_t device) {
    if (device >= -1) return SLOTH_OK;
    return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: device = %d (use -1 for host memory, 0..N-1 for a CUDA device)",
                fn, device);
}

// A sloth_gemm tuning mode (SLOTH_GEMM_NO_TUNING, _TUNE_HEURISTIC or _TUNE_WIDE).
inline sloth_status require_gemm_tuning(const char* fn, int32_t tune) {
    if (tune >= SLOTH_GEMM_NO_TUNING && tune <= SLOTH_GEMM_TUNE_WIDE) return SLOTH_OK;
    return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: tune = %d must be 0 (no tuning), 1 (heuristic) or 2 (wide)", fn, tune);
}

// Bytes per element of a validated dtype.
inline int dtype_size(sloth_dtype t) { return t == SLOTH_DTYPE_F32 ? 4 : 2; }

inline sloth_status require_count(const char* fn, int64_t v, int64_t min, const char* name) {
    if (v >= min && v <= (int64_t{1} << 62)) return SLOTH_OK;  // 2^62 keeps every byte count representable
    return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: %s = %lld must be in [%lld, 2^62]", fn, name, static_cast<long long>(v),
                static_cast<long long>(min));
}

}  // namespace sloth

// Returns from the enclosing function when a check fails.
#define SLOTH_CHECK(expr)                       \
    do {                                        \
        const sloth_status sloth_s_ = (expr);   \
        if (sloth_s_ != SLOTH_OK) return sloth_s_; \
    } while (0)
