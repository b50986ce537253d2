// GGUF block quantization export: validate every argument, then hand the work to the CPU or CUDA backend.
#include "backends.h"
#include "ggml_quants.h"
#include "validate.h"

using namespace sloth;

extern "C" {

SLOTH_API sloth_status sloth_ggml_quantize(const float* x, int64_t rows, int64_t row_length, int32_t ggml_type,
                                           void* out, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        const int64_t elements = ggml::block_elements(ggml_type);
        if (elements == 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT,
                        "%s: ggml_type = %d is not supported (only 8 = Q8_0, 12 = Q4_K, 13 = Q5_K, 14 = Q6_K)", fn,
                        ggml_type);
        SLOTH_CHECK(require_count(fn, rows, 1, "rows"));
        SLOTH_CHECK(require_count(fn, row_length, 1, "row_length"));
        if (row_length % elements != 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT,
                        "%s: row_length = %lld is not a multiple of %lld, the block size of ggml type %d", fn,
                        static_cast<long long>(row_length), static_cast<long long>(elements), ggml_type);
        if (rows > (int64_t{1} << 62) / row_length)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rows * row_length = %lld * %lld is too large", fn,
                        static_cast<long long>(rows), static_cast<long long>(row_length));
        SLOTH_CHECK(require_ptr(fn, x, "x"));
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        SLOTH_CHECK(require_device(fn, device));
        // out must not overlap x: a block's bytes are written while other blocks still read their floats.
        const auto xb = reinterpret_cast<uintptr_t>(x), ob = reinterpret_cast<uintptr_t>(out);
        const auto blocks = static_cast<uintptr_t>(rows * (row_length / elements));
        const auto xe = xb + static_cast<uintptr_t>(rows * row_length) * sizeof(float);
        const auto oe = ob + blocks * static_cast<uintptr_t>(ggml::block_bytes(ggml_type));
        if (xb < oe && ob < xe) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: out overlaps x", fn);
        const GgmlQuantArgs args{x, rows, row_length, ggml_type, out};
        return device < 0 ? cpu::ggml_quantize(fn, args) : cuda::ggml_quantize(fn, args, device, stream);
    });
}

}  // extern "C"
