// Exports of the soft-capped attention probabilities (sloth_softcap_softmax_forward / _backward) and of the one-pass
// soft-capped attention (sloth_softcap_flash_*): validate every argument, then dispatch to the CPU or CUDA backend.
#include "backends.h"
#include "validate.h"

#include <cmath>
#include <cstdint>

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

// The checks both flash directions share. batch = 0 or rows = 0 is valid (nothing to do, no pointer is read).
sloth_status validate_softcap_flash(const char* fn, sloth_dtype dtype, int64_t batch, int64_t heads, int64_t rows,
                                    int64_t keys, int64_t head_dim, int64_t batch_stride, int64_t head_stride,
                                    int64_t row_stride, float scale, float cap, int32_t device) {
    SLOTH_CHECK(require_count(fn, head_dim, 1, "head_dim"));
    if (head_dim > SLOTH_SOFTCAP_FLASH_MAX_HEAD_DIM)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: head_dim = %lld exceeds %d", fn, (long long)head_dim,
                    SLOTH_SOFTCAP_FLASH_MAX_HEAD_DIM);
    SLOTH_CHECK(require_count(fn, keys, 1, "keys"));
    // The mask and the element counts: the same limits as the row-wise kernels' (rows x keys scores per head), and
    // every q/k/v element index below 2^62 (head_dim <= 256).
    SLOTH_CHECK(validate_softcap_softmax(fn, dtype, batch, heads, rows, keys, batch_stride, head_stride, row_stride,
                                         scale, cap, device));
    const int64_t limit = int64_t{1} << 54;
    if (batch > 0 && (heads > limit / batch || rows > limit / (batch * heads) || keys > limit / (batch * heads)))
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: batch * heads * rows|keys * head_dim is too large", fn);
    return SLOTH_OK;
}

// CUDA reads q, k, v, out and grad_out 16 bytes at a time.
sloth_status require_aligned16(const char* fn, const void* p, const char* name, int32_t device) {
    if (device >= 0 && (reinterpret_cast<uintptr_t>(p) & 15u) != 0)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: %s must be 16-byte aligned on CUDA", fn, name);
    return SLOTH_OK;
}

// The arguments both directions share (the backward adds its gradients, out's gradient, lse and delta).
SoftcapFlashArgs flash_args(const void* q, const void* k, const void* v, const void* allowed, sloth_dtype dtype,
                            int64_t batch, int64_t heads, int64_t rows, int64_t keys, int64_t head_dim,
                            int64_t allowed_batch_stride, int64_t allowed_head_stride, int64_t allowed_row_stride,
                            float scale, float cap) {
    SoftcapFlashArgs args{};
    args.q = q, args.k = k, args.v = v, args.allowed = static_cast<const uint8_t*>(allowed);
    args.dtype = dtype, args.batch = batch, args.heads = heads, args.rows = rows, args.keys = keys;
    args.head_dim = head_dim, args.mask_batch_stride = allowed_batch_stride;
    args.mask_head_stride = allowed_head_stride, args.mask_row_stride = allowed_row_stride;
    args.scale = scale, args.cap = cap;
    return args;
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

SLOTH_API sloth_status sloth_softcap_flash_forward(const void* q, const void* k, const void* v, const void* allowed,
                                                   sloth_dtype dtype, int64_t batch, int64_t heads, int64_t rows,
                                                   int64_t keys, int64_t head_dim, int64_t allowed_batch_stride,
                                                   int64_t allowed_head_stride, int64_t allowed_row_stride,
                                                   float scale, float cap, void* out, float* lse, int32_t device,
                                                   void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_softcap_flash(fn, dtype, batch, heads, rows, keys, head_dim, allowed_batch_stride,
                                           allowed_head_stride, allowed_row_stride, scale, cap, device));
        if (batch == 0 || rows == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, q, "q"));
        SLOTH_CHECK(require_ptr(fn, k, "k"));
        SLOTH_CHECK(require_ptr(fn, v, "v"));
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        SLOTH_CHECK(require_ptr(fn, lse, "lse"));
        SLOTH_CHECK(require_aligned16(fn, q, "q", device));
        SLOTH_CHECK(require_aligned16(fn, k, "k", device));
        SLOTH_CHECK(require_aligned16(fn, v, "v", device));
        SLOTH_CHECK(require_aligned16(fn, out, "out", device));
        SoftcapFlashArgs args = flash_args(q, k, v, allowed, dtype, batch, heads, rows, keys, head_dim,
                                           allowed_batch_stride, allowed_head_stride, allowed_row_stride, scale, cap);
        args.out = out, args.lse = lse;
        return device < 0 ? cpu::softcap_flash_forward(fn, args) : cuda::softcap_flash_forward(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_softcap_flash_backward(const void* q, const void* k, const void* v, const void* out,
                                                    const void* grad_out, const float* lse, const void* allowed,
                                                    sloth_dtype dtype, int64_t batch, int64_t heads, int64_t rows,
                                                    int64_t keys, int64_t head_dim, int64_t allowed_batch_stride,
                                                    int64_t allowed_head_stride, int64_t allowed_row_stride,
                                                    float scale, float cap, float* delta, void* grad_q, void* grad_k,
                                                    void* grad_v, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_softcap_flash(fn, dtype, batch, heads, rows, keys, head_dim, allowed_batch_stride,
                                           allowed_head_stride, allowed_row_stride, scale, cap, device));
        if (batch == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, k, "k"));
        SLOTH_CHECK(require_ptr(fn, v, "v"));
        SLOTH_CHECK(require_ptr(fn, grad_k, "grad_k"));
        SLOTH_CHECK(require_ptr(fn, grad_v, "grad_v"));
        if (rows > 0) {
            SLOTH_CHECK(require_ptr(fn, q, "q"));
            SLOTH_CHECK(require_ptr(fn, out, "out"));
            SLOTH_CHECK(require_ptr(fn, grad_out, "grad_out"));
            SLOTH_CHECK(require_ptr(fn, lse, "lse"));
            SLOTH_CHECK(require_ptr(fn, delta, "delta"));
            SLOTH_CHECK(require_ptr(fn, grad_q, "grad_q"));
        }
        const void* aligned[] = {q, k, v, out, grad_out, grad_q, grad_k, grad_v};
        const char* names[] = {"q", "k", "v", "out", "grad_out", "grad_q", "grad_k", "grad_v"};
        for (int i = 0; i < 8; ++i) SLOTH_CHECK(require_aligned16(fn, aligned[i], names[i], device));
        SoftcapFlashArgs args = flash_args(q, k, v, allowed, dtype, batch, heads, rows, keys, head_dim,
                                           allowed_batch_stride, allowed_head_stride, allowed_row_stride, scale, cap);
        args.out = const_cast<void*>(out), args.grad_out = grad_out;
        args.lse = const_cast<float*>(lse), args.delta = delta;
        args.grad_q = grad_q, args.grad_k = grad_k, args.grad_v = grad_v;
        return device < 0 ? cpu::softcap_flash_backward(fn, args) : cuda::softcap_flash_backward(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_softcap_flash_supported(sloth_dtype dtype, int64_t head_dim, int32_t device, int32_t* out) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        *out = 0;
        SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
        SLOTH_CHECK(require_device(fn, device));
        if (head_dim < 1 || head_dim > SLOTH_SOFTCAP_FLASH_MAX_HEAD_DIM) return SLOTH_OK;
        if (device < 0) {
            *out = 1;
            return SLOTH_OK;
        }
        return cuda::softcap_flash_supported(fn, dtype, head_dim, device, out);
    });
}

}  // extern "C"
