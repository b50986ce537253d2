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

}  // namespace

extern "C" {

SLOTH_API sloth_status sloth_nf4_dequantize(const uint8_t* packed, const uint8_t* absmax_codes,
                                            const float* nested_code_map, const float* nested_absmax,
                                            const float* nested_offset, const float* nf4_code_table, int64_t n,
                                            int32_t blocksize, int32_t nested_blocksize, sloth_dtype out_dtype,
                                            void* out, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, packed, "packed"));
        SLOTH_CHECK(require_ptr(fn, absmax_codes, "absmax_codes"));
        SLOTH_CHECK(require_ptr(fn, nested_code_map, "nested_code_map"));
        SLOTH_CHECK(require_ptr(fn, nested_absmax, "nested_absmax"));
        SLOTH_CHECK(require_ptr(fn, nested_offset, "nested_offset"));
        SLOTH_CHECK(require_ptr(fn, nf4_code_table, "nf4_code_table"));
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

}  // extern "C"
