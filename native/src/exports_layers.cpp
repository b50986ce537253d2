// Exports of the fused decoder layers (RMSNorm, RoPE, SwiGLU / GeGLU): validate every argument, then dispatch to the CPU
// or CUDA backend.
#include "backends.h"
#include "validate.h"

#include <cmath>

using namespace sloth;

namespace {

sloth_status validate_rms_norm(const char* fn, sloth_dtype dtype, int64_t rows, int64_t cols, int32_t unit_offset,
                               int32_t device) {
    SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
    if (unit_offset != 0 && unit_offset != 1)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: unit_offset = %d must be 0 (Llama) or 1 (Gemma)", fn, unit_offset);
    SLOTH_CHECK(require_device(fn, device));
    SLOTH_CHECK(require_count(fn, rows, 0, "rows"));
    SLOTH_CHECK(require_count(fn, cols, 1, "cols"));
    if (rows > (int64_t{1} << 62) / cols)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rows * cols = %lld * %lld is too large", fn, (long long)rows,
                    (long long)cols);
    return SLOTH_OK;
}

// The checks SwiGLU's forward and backward share (n = 0 is valid: nothing to do, no pointer is read).
sloth_status validate_swiglu(const char* fn, sloth_dtype dtype, sloth_gate_activation activation, int64_t n,
                             int32_t device) {
    SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
    if (activation != SLOTH_GATE_SILU && activation != SLOTH_GATE_GELU_TANH)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT,
                    "%s: activation = %d is not a sloth_gate_activation (0 = silu, 1 = gelu_tanh)", fn,
                    static_cast<int>(activation));
    SLOTH_CHECK(require_device(fn, device));
    return require_count(fn, n, 0, "n");
}

// The packed form's checks: rows * (2 * cols) values must stay representable.
sloth_status validate_swiglu_packed(const char* fn, sloth_dtype dtype, sloth_gate_activation activation, int64_t rows,
                                    int64_t cols, int32_t device) {
    SLOTH_CHECK(validate_swiglu(fn, dtype, activation, rows, device));
    SLOTH_CHECK(require_count(fn, cols, 1, "cols"));
    if (rows > (int64_t{1} << 61) / cols)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rows * 2 * cols = %lld * 2 * %lld is too large", fn,
                    (long long)rows, (long long)cols);
    return SLOTH_OK;
}

}  // namespace

extern "C" {

SLOTH_API sloth_status sloth_rms_norm_forward(const void* x, const void* weight, sloth_dtype dtype, int64_t rows,
                                              int64_t cols, float eps, int32_t unit_offset, void* y, float* rstd_out,
                                              int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_rms_norm(fn, dtype, rows, cols, unit_offset, device));
        if (!(std::isfinite(eps) && eps >= 0.0f))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: eps = %g must be finite and >= 0", fn, eps);
        if (rows == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, x, "x"));
        SLOTH_CHECK(require_ptr(fn, weight, "weight"));
        SLOTH_CHECK(require_ptr(fn, y, "y"));
        const RmsNormArgs args{x, weight, nullptr, dtype, rows, cols, eps, unit_offset != 0, y, rstd_out, nullptr};
        return device < 0 ? cpu::rms_norm_forward(fn, args) : cuda::rms_norm_forward(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_rms_norm_backward(const void* grad_out, const void* x, const void* weight,
                                               const float* rstd, sloth_dtype dtype, int64_t rows, int64_t cols,
                                               int32_t unit_offset, void* grad_x, float* grad_weight, int32_t device,
                                               void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_rms_norm(fn, dtype, rows, cols, unit_offset, device));
        SLOTH_CHECK(require_ptr(fn, weight, "weight"));
        if (rows == 0) {
            // No rows: dW is all zeros (a sum over nothing), dX has no elements.
            if (grad_weight && device < 0)
                for (int64_t j = 0; j < cols; ++j) grad_weight[j] = 0.0f;
            else if (grad_weight)
                return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rows = 0 with grad_weight on a GPU: zero it instead", fn);
            return SLOTH_OK;
        }
        SLOTH_CHECK(require_ptr(fn, grad_out, "grad_out"));
        SLOTH_CHECK(require_ptr(fn, x, "x"));
        SLOTH_CHECK(require_ptr(fn, rstd, "rstd"));
        SLOTH_CHECK(require_ptr(fn, grad_x, "grad_x"));
        const RmsNormArgs args{x,    weight, grad_out,          dtype, rows, cols, 0.0f, unit_offset != 0,
                               grad_x, const_cast<float*>(rstd), grad_weight};
        return device < 0 ? cpu::rms_norm_backward(fn, args) : cuda::rms_norm_backward(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_rope(const void* x, const void* cos, const void* sin, sloth_dtype dtype,
                                  sloth_rope_layout layout, int64_t batch, int64_t heads, int64_t seq,
                                  int64_t head_dim, int64_t rotary_dim, int64_t cos_batch, int32_t inverse, void* out,
                                  int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
        SLOTH_CHECK(require_device(fn, device));
        if (layout != SLOTH_ROPE_BHTD && layout != SLOTH_ROPE_BTHD)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: layout = %d is not a sloth_rope_layout (0 = BHTD, 1 = BTHD)",
                        fn, static_cast<int>(layout));
        SLOTH_CHECK(require_count(fn, batch, 0, "batch"));
        SLOTH_CHECK(require_count(fn, heads, 1, "heads"));
        SLOTH_CHECK(require_count(fn, seq, 1, "seq"));
        SLOTH_CHECK(require_count(fn, head_dim, 2, "head_dim"));
        if (rotary_dim < 2 || rotary_dim > head_dim || rotary_dim % 2 != 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rotary_dim = %lld must be even and in [2, head_dim = %lld]", fn,
                        (long long)rotary_dim, (long long)head_dim);
        if (cos_batch != 1 && cos_batch != batch)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: cos_batch = %lld must be 1 or batch = %lld", fn,
                        (long long)cos_batch, (long long)batch);
        if (inverse != 0 && inverse != 1)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: inverse = %d must be 0 or 1", fn, inverse);
        const int64_t limit = int64_t{1} << 62;
        if (heads > limit / seq || heads * seq > limit / head_dim || (batch > 0 && heads * seq * head_dim > limit / batch))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: batch * heads * seq * head_dim is too large", fn);
        if (batch == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, x, "x"));
        SLOTH_CHECK(require_ptr(fn, cos, "cos"));
        SLOTH_CHECK(require_ptr(fn, sin, "sin"));
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        const RopeArgs args{x,        cos,        sin,       dtype,        layout, batch, heads, seq,
                            head_dim, rotary_dim, cos_batch, inverse != 0, out};
        return device < 0 ? cpu::rope(fn, args) : cuda::rope(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_swiglu_forward(const void* gate, const void* up, sloth_dtype dtype,
                                            sloth_gate_activation activation, int64_t n, void* out, int32_t device,
                                            void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_swiglu(fn, dtype, activation, n, device));
        if (n == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, gate, "gate"));
        SLOTH_CHECK(require_ptr(fn, up, "up"));
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        const SwigluArgs args{nullptr, gate, up, dtype, activation, n, out, nullptr};
        return device < 0 ? cpu::swiglu_forward(fn, args) : cuda::swiglu_forward(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_swiglu_backward(const void* grad_out, const void* gate, const void* up,
                                             sloth_dtype dtype, sloth_gate_activation activation, int64_t n,
                                             void* grad_gate, void* grad_up, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_swiglu(fn, dtype, activation, n, device));
        if (n == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, grad_out, "grad_out"));
        SLOTH_CHECK(require_ptr(fn, gate, "gate"));
        SLOTH_CHECK(require_ptr(fn, up, "up"));
        SLOTH_CHECK(require_ptr(fn, grad_gate, "grad_gate"));
        SLOTH_CHECK(require_ptr(fn, grad_up, "grad_up"));
        const SwigluArgs args{grad_out, gate, up, dtype, activation, n, grad_gate, grad_up};
        return device < 0 ? cpu::swiglu_backward(fn, args) : cuda::swiglu_backward(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_swiglu_packed_forward(const void* gate_up, sloth_dtype dtype,
                                                   sloth_gate_activation activation, int64_t rows, int64_t cols,
                                                   void* out, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_swiglu_packed(fn, dtype, activation, rows, cols, device));
        if (rows == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, gate_up, "gate_up"));
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        SwigluArgs args{nullptr, gate_up, nullptr, dtype, activation, rows * cols, out, nullptr};
        args.cols = cols;
        return device < 0 ? cpu::swiglu_forward(fn, args) : cuda::swiglu_forward(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_swiglu_packed_backward(const void* grad_out, const void* gate_up, sloth_dtype dtype,
                                                    sloth_gate_activation activation, int64_t rows, int64_t cols,
                                                    void* grad_gate_up, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(validate_swiglu_packed(fn, dtype, activation, rows, cols, device));
        if (rows == 0) return SLOTH_OK;
        SLOTH_CHECK(require_ptr(fn, grad_out, "grad_out"));
        SLOTH_CHECK(require_ptr(fn, gate_up, "gate_up"));
        SLOTH_CHECK(require_ptr(fn, grad_gate_up, "grad_gate_up"));
        SwigluArgs args{grad_out, gate_up, nullptr, dtype, activation, rows * cols, grad_gate_up, nullptr};
        args.cols = cols;
        return device < 0 ? cpu::swiglu_backward(fn, args) : cuda::swiglu_backward(fn, args, device, stream);
    });
}

}  // extern "C"
