// Loss exports: validate, then dispatch to the CPU or CUDA backend.
#include "backends.h"
#include "validate.h"

#include <cmath>

using namespace sloth;

extern "C" {

SLOTH_API sloth_status sloth_cross_entropy_chunk_tuned(void* logits, sloth_dtype dtype, int64_t rows, int64_t vocab,
                                                       int64_t row_stride, const int64_t* labels, int64_t ignore_index,
                                                       float logit_scale, float softcap, float label_smoothing,
                                                       float z_loss, const float* row_grad_scale, float grad_scale,
                                                       int32_t compute_grad, float* loss_out, float* lse_out,
                                                       int32_t threads_per_row, int64_t rows_in_flight, int32_t device,
                                                       void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        if (rows_in_flight < 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rows_in_flight = %lld must be >= 0 (0 = one block per row)",
                        fn, (long long)rows_in_flight);
        if (threads_per_row != 0 && threads_per_row != 256 && threads_per_row != 512 && threads_per_row != 1024)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: threads_per_row = %d must be 0, 256, 512 or 1024", fn,
                        threads_per_row);
        SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
        SLOTH_CHECK(require_device(fn, device));
        if (rows < 0) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rows = %lld must be >= 0", fn, (long long)rows);
        if (vocab < 1) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: vocab = %lld must be >= 1", fn, (long long)vocab);
        if (row_stride < vocab)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: row_stride = %lld must be >= vocab = %lld", fn,
                        (long long)row_stride, (long long)vocab);
        if (!(std::isfinite(logit_scale) && logit_scale > 0.0f))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: logit_scale = %g must be finite and > 0", fn, logit_scale);
        if (!(std::isfinite(softcap) && softcap >= 0.0f))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: softcap = %g must be finite and >= 0 (0 = off)", fn, softcap);
        if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: label_smoothing = %g must be in [0, 1]", fn, label_smoothing);
        if (!(std::isfinite(z_loss) && z_loss >= 0.0f))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: z_loss = %g must be finite and >= 0", fn, z_loss);
        if (!std::isfinite(grad_scale))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: grad_scale = %g must be finite", fn, grad_scale);
        if (compute_grad != 0 && compute_grad != 1)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: compute_grad = %d must be 0 or 1", fn, compute_grad);
        if (rows == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, logits, "logits"));
        SLOTH_CHECK(require_ptr(fn, labels, "labels"));
        SLOTH_CHECK(require_ptr(fn, loss_out, "loss_out"));
        SLOTH_CHECK(require_ptr(fn, lse_out, "lse_out"));
        const CrossEntropyArgs args{logits,       dtype,        rows,       vocab,          row_stride,
                                    labels,       ignore_index, logit_scale, softcap,       label_smoothing,
                                    z_loss,       row_grad_scale, grad_scale, compute_grad != 0, loss_out,
                                    lse_out,      threads_per_row, rows_in_flight};
        return device < 0 ? cpu::cross_entropy_chunk(fn, args) : cuda::cross_entropy_chunk(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_cross_entropy_chunk(void* logits, sloth_dtype dtype, int64_t rows, int64_t vocab,
                                                 int64_t row_stride, const int64_t* labels, int64_t ignore_index,
                                                 float logit_scale, float softcap, float label_smoothing,
                                                 float z_loss, const float* row_grad_scale, float grad_scale,
                                                 int32_t compute_grad, float* loss_out, float* lse_out,
                                                 int32_t device, void* stream) {
    return sloth_cross_entropy_chunk_tuned(logits, dtype, rows, vocab, row_stride, labels, ignore_index, logit_scale,
                                           softcap, label_smoothing, z_loss, row_grad_scale, grad_scale, compute_grad,
                                           loss_out, lse_out, 0, 0, device, stream);
}

}  // extern "C"
