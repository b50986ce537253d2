// NF4 exports: validate every argument, then hand the work to the CPU or CUDA backend.
#include "backends.h"
#include "validate.h"

using namespace sloth;

namespace {

sloth_status validate_nf4_sizes(const char* fn, int64_t n, int32_t blocksize, int32_t nested_blocksize) {
    if (n < 1) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: n = %lld must be >= 1", fn, static_cast<long long>(n));
    SLOTH_CHECK(require_count(fn, n, 1, "n"));
    SLOTH_CHECK(require_blocksize(fn, blocksize, "blocksize"));
    SLOTH_CHECK(require_blocksize(fn, nested_blocksize, "nested_blocksize"));
    return SLOTH_OK;
}

/// The six arrays of a double-quantized NF4 weight (bitsandbytes' layout), checked in one place for every entry point
/// that reads one.
sloth_status require_nf4_weight(const char* fn, const uint8_t* packed, const uint8_t* absmax_codes, const float* nested_code_map,
                                const float* nested_absmax, const float* nested_offset, const float* nf4_code_table) {
    SLOTH_CHECK(require_ptr(fn, packed, "packed"));
    SLOTH_CHECK(require_ptr(fn, absmax_codes, "absmax_codes"));
    SLOTH_CHECK(require_ptr(fn, nested_code_map, "nested_code_map"));
    SLOTH_CHECK(require_ptr(fn, nested_absmax, "nested_absmax"));
    SLOTH_CHECK(require_ptr(fn, nested_offset, "nested_offset"));
    SLOTH_CHECK(require_ptr(fn, nf4_code_table, "nf4_code_table"));
    return SLOTH_OK;
}

}  // namespace

extern "C" {

SLOTH_API sloth_status sloth_nf4_dequantize(const uint8_t* packed, const uint8_t* absmax_codes,
                                            const float* nested_code_map, const float* nested_absmax,
                                            const float* nested_offset, const float* nf4_code_table, int64_t n,
                                            int32_t blocksize, int32_t nested_blocksize, sloth_dtype out_dtype,
                                            void* out, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_nf4_weight(fn, packed, absmax_codes, nested_code_map, nested_absmax, nested_offset, nf4_code_table));
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        SLOTH_CHECK(validate_nf4_sizes(fn, n, blocksize, nested_blocksize));
        SLOTH_CHECK(require_dtype(fn, out_dtype, "out_dtype"));
        SLOTH_CHECK(require_device(fn, device));
        const Nf4DequantArgs args{packed,         absmax_codes, nested_code_map, nested_absmax,
                                  nested_offset,  nf4_code_table, n,             blocksize,
                                  nested_blocksize, out_dtype,  out};
        return device < 0 ? cpu::nf4_dequantize(fn, args) : cuda::nf4_dequantize(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_nf4_quantize(const void* src, sloth_dtype src_dtype, int64_t n, int32_t blocksize,
                                          int32_t nested_blocksize, const float* nested_code_map, uint8_t* packed,
                                          uint8_t* absmax_codes, float* nested_absmax, float* nested_offset,
                                          float* absmax_scratch, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, src, "src"));
        SLOTH_CHECK(require_ptr(fn, nested_code_map, "nested_code_map"));
        SLOTH_CHECK(require_ptr(fn, packed, "packed"));
        SLOTH_CHECK(require_ptr(fn, absmax_codes, "absmax_codes"));
        SLOTH_CHECK(require_ptr(fn, nested_absmax, "nested_absmax"));
        SLOTH_CHECK(require_ptr(fn, nested_offset, "nested_offset"));
        SLOTH_CHECK(require_ptr(fn, absmax_scratch, "absmax_scratch"));
        SLOTH_CHECK(validate_nf4_sizes(fn, n, blocksize, nested_blocksize));
        SLOTH_CHECK(require_dtype(fn, src_dtype, "src_dtype"));
        SLOTH_CHECK(require_device(fn, device));
        const Nf4QuantArgs args{src,          src_dtype,     n,       blocksize,     nested_blocksize, nested_code_map,
                                packed,       absmax_codes,  nested_absmax, nested_offset, absmax_scratch};
        return device < 0 ? cpu::nf4_quantize(fn, args) : cuda::nf4_quantize(fn, args, device, stream);
    });
}

SLOTH_API sloth_status sloth_nf4_gemv(const void* x, sloth_dtype dtype, int64_t batch, int64_t k, int64_t m,
                                      const uint8_t* packed, const uint8_t* absmax_codes,
                                      const float* nested_code_map, const float* nested_absmax,
                                      const float* nested_offset, const float* nf4_code_table, int32_t blocksize,
                                      int32_t nested_blocksize, void* y, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
        SLOTH_CHECK(require_device(fn, device));
        if (batch < 1 || batch > SLOTH_NF4_GEMV_MAX_BATCH)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: batch = %lld must be in [1, %d] (use a GEMM for more rows)", fn,
                        static_cast<long long>(batch), SLOTH_NF4_GEMV_MAX_BATCH);
        SLOTH_CHECK(require_count(fn, k, 1, "k"));
        SLOTH_CHECK(require_count(fn, m, 1, "m"));
        if (m > (int64_t{1} << 62) / k)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: m * k = %lld * %lld is too large", fn, static_cast<long long>(m),
                        static_cast<long long>(k));
        SLOTH_CHECK(require_blocksize(fn, blocksize, "blocksize"));
        SLOTH_CHECK(require_blocksize(fn, nested_blocksize, "nested_blocksize"));
        SLOTH_CHECK(require_ptr(fn, x, "x"));
        SLOTH_CHECK(require_nf4_weight(fn, packed, absmax_codes, nested_code_map, nested_absmax, nested_offset, nf4_code_table));
        SLOTH_CHECK(require_ptr(fn, y, "y"));
        // y must not overlap x: the GPU threads of one row write y while others still read x.
        const auto xb = reinterpret_cast<uintptr_t>(x), yb = reinterpret_cast<uintptr_t>(y);
        const auto xe = xb + static_cast<uintptr_t>(batch * k * dtype_size(dtype));
        const auto ye = yb + static_cast<uintptr_t>(batch * m * dtype_size(dtype));
        if (xb < ye && yb < xe) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: y overlaps x", fn);
        const Nf4GemvArgs args{x,      dtype,           batch,         k,             m,
                               packed, absmax_codes,    nested_code_map, nested_absmax, nested_offset,
                               nf4_code_table, blocksize, nested_blocksize, y};
        return device < 0 ? cpu::nf4_gemv(fn, args) : cuda::nf4_gemv(fn, args, device, stream);
    });
}

}  // extern "C"
