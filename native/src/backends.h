// The kernels behind the exports, after validation. cpu:: always exists; cuda:: is real when the library is built
// with CUDA and otherwise answers SLOTH_ERROR_NO_CUDA (cuda_stub.cpp).
#pragma once
#include "slothsharp.h"

#include <cstdint>
#include <string>

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

struct Nf4QuantArgs {
    const void* src;
    sloth_dtype src_dtype;
    int64_t n;
    int32_t blocksize;
    int32_t nested_blocksize;
    const float* nested_code_map;
    uint8_t* packed;
    uint8_t* absmax_codes;
    float* nested_absmax;
    float* nested_offset;
    float* absmax;  // the caller's scratch, float32[ceil(n / blocksize)]
};

// The mean of the absmax vector is summed in double by this many lanes (lane t: b = t, t + kNf4MeanLanes, ...),
// then the lane sums in lane order: one fixed order that the CPU loop and the one-block GPU reduction share.
constexpr int64_t kNf4MeanLanes = 1024;

// sloth_ggml_quantize's arguments, validated: `rows` contiguous float32 rows of `row_length` (a multiple of the
// type's block size) into rows * row_length / block_elements blocks of ggml bytes.
struct GgmlQuantArgs {
    const float* x;
    int64_t rows;
    int64_t row_length;
    int32_t type;  // ggml type number: 8 (Q8_0), 12 (Q4_K), 13 (Q5_K), 14 (Q6_K)
    void* out;
};

struct RmsNormArgs {
    const void* x;
    const void* weight;
    const void* grad_out;  // backward only
    sloth_dtype dtype;
    int64_t rows;
    int64_t cols;
    float eps;
    bool unit_offset;      // Gemma's (1 + w) form, all in float32
    void* y;               // forward: y; backward: grad_x
    float* rstd;           // forward: written (may be NULL); backward: read
    float* grad_weight;    // backward only, may be NULL
};

struct RopeArgs {
    const void* x;
    const void* cos;
    const void* sin;
    sloth_dtype dtype;
    sloth_rope_layout layout;
    int64_t batch, heads, seq, head_dim, rotary_dim, cos_batch;
    bool inverse;
    void* out;
};

struct SwigluArgs {
    const void* grad_out;  // backward only
    const void* gate;
    const void* up;
    sloth_dtype dtype;
    sloth_gate_activation activation;
    int64_t n;
    void* out;        // forward: out; backward: grad_gate
    void* grad_up;    // backward only
    // Packed gate/up (sloth_swiglu_packed_*): cols > 0, n = rows * cols; gate = row r's first cols values of a
    // [rows, 2 * cols] tensor, up = its last cols (so up = gate + cols, row stride 2 * cols); backward's grad_gate
    // and grad_up are laid out the same way. cols = 0: gate, up and the outputs are flat arrays of n values.
    int64_t cols = 0;
};

// sloth_softcap_softmax_forward / _backward, validated (see slothsharp.h). Row r of the batch * heads * rows rows is
// (b, h, i) = (r / (heads * rows), r / rows % heads, r % rows); its mask row starts at
// allowed + b * mask_batch_stride + h * mask_head_stride + i * mask_row_stride.
struct SoftcapSoftmaxArgs {
    const void* scores;       // s0 [batch * heads * rows, cols]
    const void* grad_probs;   // backward only: dp, same layout
    const uint8_t* allowed;   // NULL: every key
    sloth_dtype dtype;
    int64_t batch, heads, rows, cols;
    int64_t mask_batch_stride, mask_head_stride, mask_row_stride;
    float scale, cap;
    void* probs;              // both directions
    void* grad_scores;        // backward only
    int64_t total_rows() const { return batch * heads * rows; }
    const uint8_t* mask_row(int64_t r) const {
        if (!allowed) return nullptr;
        const int64_t i = r % rows, bh = r / rows;
        return allowed + (bh / heads) * mask_batch_stride + (bh % heads) * mask_head_stride + i * mask_row_stride;
    }
};

// sloth_softcap_flash_forward / _backward, validated (see slothsharp.h). bh = b * heads + h indexes the
// [batch * heads] matrices of q, out, grad_out ([rows, head_dim]), k, v ([keys, head_dim]) and lse, delta ([rows]).
struct SoftcapFlashArgs {
    const void* q;
    const void* k;
    const void* v;
    void* out;             // forward: written; backward: the forward's output, read
    const void* grad_out;  // backward only
    const uint8_t* allowed;
    sloth_dtype dtype;
    int64_t batch, heads, rows, keys, head_dim;
    int64_t mask_batch_stride, mask_head_stride, mask_row_stride;
    float scale, cap;
    float* lse;    // forward: written; backward: read
    float* delta;  // backward scratch
    void* grad_q;
    void* grad_k;
    void* grad_v;
    // The mask row of query row i of (b * heads + h) = bh, or NULL (every key).
    const uint8_t* mask_row(int64_t bh, int64_t i) const {
        if (!allowed) return nullptr;
        return allowed + (bh / heads) * mask_batch_stride + (bh % heads) * mask_head_stride + i * mask_row_stride;
    }
};

struct Nf4GemvArgs {
    const void* x;  // [batch, k]
    sloth_dtype dtype;
    int64_t batch, k, m;
    const uint8_t* packed;
    const uint8_t* absmax_codes;
    const float* nested_code_map;
    const float* nested_absmax;
    const float* nested_offset;
    const float* nf4_code_table;
    int32_t blocksize;
    int32_t nested_blocksize;
    void* y;  // [batch, m]
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
    int32_t threads_per_row = 0;  // CUDA threads per row: 0 = the backend's choice, else 256, 512 or 1024
    int64_t rows_in_flight = 0;   // CUDA blocks: 0 = one per row, else at most this many, each looping over rows
};

struct GemmArgs {  // sloth_gemm's arguments, validated (row-major; see slothsharp.h)
    bool trans_a;
    bool trans_b;
    int64_t m, n, k;
    float alpha;
    const void* a;
    int64_t lda;
    const void* b;
    int64_t ldb;
    float beta;
    void* c;
    int64_t ldc;
    sloth_dtype dtype;  // f16 or bf16
    void* workspace;
    int64_t workspace_bytes;
    int32_t tune;  // SLOTH_GEMM_NO_TUNING, _TUNE_HEURISTIC or _TUNE_WIDE
};

namespace cpu {
sloth_status nf4_dequantize(const char* fn, const Nf4DequantArgs& a);
sloth_status nf4_quantize(const char* fn, const Nf4QuantArgs& a);
sloth_status nf4_gemv(const char* fn, const Nf4GemvArgs& a);
sloth_status ggml_quantize(const char* fn, const GgmlQuantArgs& a);
// nf4_gemv over weight rows [row0, row0 + a.m) of a larger matrix (the packed/absmax pointers of the whole matrix),
// y[b * y_stride + r]: the decoder's grouped GEMV twin (decode_ops_cpu.cpp). nf4_gemv is (row0 0, y_stride a.m).
sloth_status nf4_gemv_rows(const char* fn, const Nf4GemvArgs& a, int64_t row0, int64_t y_stride);
sloth_status cross_entropy_chunk(const char* fn, const CrossEntropyArgs& a);
sloth_status rms_norm_forward(const char* fn, const RmsNormArgs& a);
sloth_status rms_norm_backward(const char* fn, const RmsNormArgs& a);
sloth_status rope(const char* fn, const RopeArgs& a);
sloth_status swiglu_forward(const char* fn, const SwigluArgs& a);
sloth_status swiglu_backward(const char* fn, const SwigluArgs& a);
sloth_status softcap_softmax_forward(const char* fn, const SoftcapSoftmaxArgs& a);
sloth_status softcap_softmax_backward(const char* fn, const SoftcapSoftmaxArgs& a);
sloth_status softcap_flash_forward(const char* fn, const SoftcapFlashArgs& a);
sloth_status softcap_flash_backward(const char* fn, const SoftcapFlashArgs& a);
}  // namespace cpu

namespace cuda {
bool built();
sloth_status available(int32_t* out);
sloth_status device_count(int32_t* out);
sloth_status device_name(const char* fn, int32_t device, char* name, int32_t capacity);
sloth_status compute_capability(const char* fn, int32_t device, int32_t* major, int32_t* minor);
sloth_status mem_info(const char* fn, int32_t device, int64_t* free_bytes, int64_t* total_bytes);
sloth_status synchronize(const char* fn, int32_t device);
sloth_status profiler(const char* fn, int32_t device, bool collect);
sloth_status kernel_arch(const char* fn, int32_t device, int32_t* arch);
// Makes `device` current on the calling thread, runs body(ctx), restores the previous device (NCCL takes its device
// from the current one at init). Without CUDA: SLOTH_ERROR_NO_CUDA.
sloth_status run_on_device(const char* fn, int32_t device, sloth_status (*body)(void*), void* ctx);
sloth_status nf4_dequantize(const char* fn, const Nf4DequantArgs& a, int32_t device, void* stream);
sloth_status nf4_quantize(const char* fn, const Nf4QuantArgs& a, int32_t device, void* stream);
sloth_status nf4_gemv(const char* fn, const Nf4GemvArgs& a, int32_t device, void* stream);
sloth_status ggml_quantize(const char* fn, const GgmlQuantArgs& a, int32_t device, void* stream);
sloth_status cross_entropy_chunk(const char* fn, const CrossEntropyArgs& a, int32_t device, void* stream);
sloth_status rms_norm_forward(const char* fn, const RmsNormArgs& a, int32_t device, void* stream);
sloth_status rms_norm_backward(const char* fn, const RmsNormArgs& a, int32_t device, void* stream);
sloth_status rope(const char* fn, const RopeArgs& a, int32_t device, void* stream);
sloth_status swiglu_forward(const char* fn, const SwigluArgs& a, int32_t device, void* stream);
sloth_status swiglu_backward(const char* fn, const SwigluArgs& a, int32_t device, void* stream);
sloth_status softcap_softmax_forward(const char* fn, const SoftcapSoftmaxArgs& a, int32_t device, void* stream);
sloth_status softcap_softmax_backward(const char* fn, const SoftcapSoftmaxArgs& a, int32_t device, void* stream);
sloth_status softcap_flash_forward(const char* fn, const SoftcapFlashArgs& a, int32_t device, void* stream);
sloth_status softcap_flash_backward(const char* fn, const SoftcapFlashArgs& a, int32_t device, void* stream);
// *out = 1 if the flash kernels run for dtype and head_dim on device (their architecture and shared memory).
sloth_status softcap_flash_supported(const char* fn, sloth_dtype dtype, int64_t head_dim, int32_t device, int32_t* out);
// Streams and events (device_cuda.cu). Without CUDA: SLOTH_ERROR_UNSUPPORTED.
sloth_status stream_create(const char* fn, int32_t device, void** stream);
sloth_status stream_destroy(const char* fn, int32_t device, void* stream);
sloth_status event_create(const char* fn, int32_t device, void** event);
sloth_status event_destroy(const char* fn, int32_t device, void* event);
sloth_status event_record(const char* fn, int32_t device, void* event, void* stream);
sloth_status stream_wait_event(const char* fn, int32_t device, void* stream, void* event);
// cuBLASLt GEMM with the per-shape tuner (gemm_lt.cu), and what the tuner chose ("" without CUDA).
sloth_status gemm(const char* fn, const GemmArgs& g, int32_t device, void* stream);
std::string gemm_tuning_report();
void gemm_forget_tuning();
}  // namespace cuda

}  // namespace sloth
