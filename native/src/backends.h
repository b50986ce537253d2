// The kernels behind the exports, after validation. cpu:: always exists; cuda:: is real when the library is built
// with CUDA and otherwise answers SLOTH_ERROR_NO_CUDA (cuda_stub.cpp).
#pragma once
#include "slothsharp.h"

#include <cstdint>

namespace sloth {

struct Nf4DequantArgs {
    const uint8_t* packed;
    const uint8_t* absmax_codes;
    const float* nested_code_map;
    const float* nested_absmax;
    const float* nested_offset;
    const float* nf4_code_table;
    int64_t n;
    int32_t blocksize;
    int32_t nested_blocksize;
    sloth_dtype out_dtype;
    void* out;
};

struct CrossEntropyArgs {
    void* logits;
    sloth_dtype dtype;
    int64_t rows;
    int64_t vocab;
    int64_t row_stride;
    const int64_t* labels;
    int64_t ignore_index;
    float logit_scale;
    float softcap;
    float label_smoothing;
    float z_loss;
    const float* row_grad_scale;
    float grad_scale;
    bool compute_grad;
    float* loss_out;
    float* lse_out;
};

namespace cpu {
sloth_status nf4_dequantize(const char* fn, const Nf4DequantArgs& a);
sloth_status nf4_quantize(const char* fn, const void* src, sloth_dtype src_dtype, int64_t n, int32_t blocksize,
                          int32_t nested_blocksize, const float* nested_code_map, uint8_t* packed,
                          uint8_t* absmax_codes, float* nested_absmax, float* nested_offset, float* absmax);
sloth_status cross_entropy_chunk(const char* fn, const CrossEntropyArgs& a);
}  // namespace cpu

namespace cuda {
bool built();
sloth_status available(int32_t* out);
sloth_status device_count(int32_t* out);
sloth_status device_name(const char* fn, int32_t device, char* name, int32_t capacity);
sloth_status compute_capability(const char* fn, int32_t device, int32_t* major, int32_t* minor);
sloth_status mem_info(const char* fn, int32_t device, int64_t* free_bytes, int64_t* total_bytes);
sloth_status synchronize(const char* fn, int32_t device);
sloth_status kernel_arch(const char* fn, int32_t device, int32_t* arch);
sloth_status nf4_dequantize(const char* fn, const Nf4DequantArgs& a, int32_t device, void* stream);
sloth_status cross_entropy_chunk(const char* fn, const CrossEntropyArgs& a, int32_t device, void* stream);
}  // namespace cuda

}  // namespace sloth
