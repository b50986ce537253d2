// Exports of the soft-capped attention probabilities (sloth_softcap_softmax_forward / _backward): validate every
// argument, then dispatch to the CPU or CUDA backend.
#include "backends.h"
#include "validate.h"

#include <cmath>

using namespace sloth;

namespace {

// The checks both directions share. batch = 0 or rows = 0 is valid (nothing to do, no pointer is read).
sloth_status validate_softcap_softmax(const char* fn, sloth_dtype dtype, int64_t batch, int64_t heads, int64_t rows,
                                      int64_t cols, int64_t batch_stride, int64_t head_stride, int64_t row_stride,
                                      float scale, float cap, int32_t device) {
    SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
    SLOTH_CHECK(require_device(fn, device));
    SLOTH_CHECK(require_count(fn, batch, 0, "batch"));
    SLOTH_CHECK(require_count(fn, heads, 1, "heads"));
    SLOTH_CHECK(require_count(fn, rows, 0, "rows"));
    SLOTH_CHECK(require_count(fn, cols, 1, "cols"));
    SLOTH_CHECK(require_count(fn, batch_stride, 0, "allowed_batch_stride"));
    SLOTH_CHECK(require_count(fn, head_stride, 0, "allowed_head_stride"));
    SLOTH_CHECK(require_count(fn, row_stride, 0, "allowed_row_stride"));
    // Every element index (and each mask offset term) must stay below 2^62.
    const int64_t limit = int64_t{1} << 62;
    if (batch > 0 && rows > 0 &&
        (heads > limit / batch || rows > limit / (batch * heads) || cols > limit / (batch * heads * rows)))
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: batch * heads * rows * cols = %lld * %lld * %lld * %lld is too large",
                    fn, (long long)batch, (long long)heads, (long long)rows, (long long)cols);
    if ((batch > 0 && batch_stride > limit / batch) || head_stride > limit / heads ||
        (rows > 0 && row_stride > limit / rows))
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: the mask strides address more than 2^62 elements", fn);
    if (!std::isfinite(scale))
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: scale = %g must be finite", fn, scale);
    if (!(std::isfinite(cap) && cap > 0.0f))
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: cap = %g must be finite and > 0", fn, cap);
    return SLOTH_OK;
}

}  // namespace

extern "C" {

SLOTH_API sloth_status sloth_softcap_softmax_forward(const void* scores, const void* allowed, sloth_dtype dtype,
                                                     int64_t batch, int64_t heads, int64_t rows, int64_t cols,
                                                     int64_t allowed_batch_stride, int64_t allowed_head_stride,
                                                     int64_t allowed_row_stride, float scale, float cap, void* probs,
                                                     int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_softcap_softmax(fn, dtype, batch, heads, rows, cols, allowed_batch_stride,
                                             allowed_head_stride, allowed_row_stride, scale, cap, device));
        if (batch == 0 || rows == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, scores, "scores"));
        SLOTH_CHECK(require_ptr(fn, probs, "probs"));
        const SoftcapSoftmaxArgs args{scores, nullptr, static_cast<const uint8_t*>(allowed), dtype, batch, heads, rows,
                                      cols, allowed_batch_stride, allowed_head_stride, allowed_row_stride, scale, cap,
                                      probs, nullptr};
        return device < 0 ? cpu::softcap_softmax_forward(fn, args)
                          : cuda::softcap_softmax_forward(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_softcap_softmax_backward(const void* scores, const void* grad_probs, const void* allowed,
                                                      sloth_dtype dtype, int64_t batch, int64_t heads, int64_t rows,
                                                      int64_t cols, int64_t allowed_batch_stride,
                                                      int64_t allowed_head_stride, int64_t allowed_row_stride,
                                                      float scale, float cap, void* probs, void* grad_scores,
                                                      int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_softcap_softmax(fn, dtype, batch, heads, rows, cols, allowed_batch_stride,
                                             allowed_head_stride, allowed_row_stride, scale, cap, device));
        if (batch == 0 || rows == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, scores, "scores"));
        SLOTH_CHECK(require_ptr(fn, grad_probs, "grad_probs"));
        SLOTH_CHECK(require_ptr(fn, probs, "probs"));
        SLOTH_CHECK(require_ptr(fn, grad_scores, "grad_scores"));
        const SoftcapSoftmaxArgs args{scores, grad_probs, static_cast<const uint8_t*>(allowed), dtype, batch, heads,
                                      rows, cols, allowed_batch_stride, allowed_head_stride, allowed_row_stride, scale,
                                      cap, probs, grad_scores};
        return device < 0 ? cpu::softcap_softmax_backward(fn, args)
                          : cuda::softcap_softmax_backward(fn, args, device, stream);
    });
}

}  // extern "C"
