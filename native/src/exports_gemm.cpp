// GEMM exports: validate, then the cuBLASLt backend (cuda/gemm_lt.cu). There is no CPU GEMM here: on the host
// TorchSharp's is the right one, so the CPU answers "unsupported" and callers use theirs.
#include "backends.h"
#include "validate.h"

#include <cmath>
#include <algorithm>
#include <climits>
#include <cstring>

using namespace sloth;

extern "C" {

SLOTH_API sloth_status sloth_gemm(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                  const void* a, int64_t lda, const void* b, int64_t ldb, float beta, void* c,
                                  int64_t ldc, sloth_dtype dtype, void* workspace, int64_t workspace_bytes,
                                  int32_t tune, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        if ((trans_a != 0 && trans_a != 1) || (trans_b != 0 && trans_b != 1))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: trans_a = %d, trans_b = %d must be 0 or 1", fn, trans_a,
                        trans_b);
        SLOTH_CHECK(require_gemm_tuning(fn, tune));
        SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
        if (dtype == SLOTH_DTYPE_F32)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT,
                        "%s: dtype f32 is not supported (f16 or bf16; use TorchSharp's matmul for float32)", fn);
        SLOTH_CHECK(require_count(fn, m, 1, "m"));
        SLOTH_CHECK(require_count(fn, n, 1, "n"));
        SLOTH_CHECK(require_count(fn, k, 1, "k"));
        const int64_t min_lda = trans_a ? m : k, min_ldb = trans_b ? k : n;
        if (lda < min_lda || ldb < min_ldb || ldc < n)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT,
                        "%s: strides too small: lda = %lld (needs >= %lld), ldb = %lld (needs >= %lld), ldc = %lld "
                        "(needs >= n = %lld)",
                        fn, (long long)lda, (long long)min_lda, (long long)ldb, (long long)min_ldb, (long long)ldc,
                        (long long)n);
        if (!std::isfinite(alpha) || !std::isfinite(beta))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: alpha = %g and beta = %g must be finite", fn, alpha, beta);
        if (workspace_bytes < 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: workspace_bytes = %lld must be >= 0", fn,
                        (long long)workspace_bytes);
        SLOTH_CHECK(require_ptr(fn, a, "a"));
        SLOTH_CHECK(require_ptr(fn, b, "b"));
        SLOTH_CHECK(require_ptr(fn, c, "c"));
        if (workspace_bytes > 0) SLOTH_CHECK(require_ptr(fn, workspace, "workspace"));
        SLOTH_CHECK(require_device(fn, device));
        if (device < 0)
            return fail(SLOTH_ERROR_UNSUPPORTED, "%s: runs on CUDA devices only (device = -1); use TorchSharp's "
                        "matmul on the CPU", fn);
        const GemmArgs args{trans_a != 0, trans_b != 0, m,     n,     k,         alpha,           a,        lda, b,
                            ldb,          beta,         c,     ldc,   dtype,     workspace_bytes > 0 ? workspace : nullptr,
                            workspace_bytes, tune};
        return cuda::gemm(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_gemm_tuning_report(char* text, int32_t capacity, int32_t* needed) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        if (capacity < 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: capacity = %d must be >= 0", fn, capacity);
        if (capacity > 0) SLOTH_CHECK(require_ptr(fn, text, "text"));
        const std::string report = cuda::gemm_tuning_report();
        if (needed != nullptr) *needed = static_cast<int32_t>(std::min<size_t>(report.size() + 1, INT32_MAX));
        if (capacity > 0) {
            const size_t len = std::min(report.size(), static_cast<size_t>(capacity - 1));
            std::memcpy(text, report.data(), len);
            text[len] = '\0';
        }
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_gemm_forget_tuning(void) {
    return guarded(__func__, [&] {
        cuda::gemm_forget_tuning();
        return SLOTH_OK;
    });
}

}  // extern "C"
