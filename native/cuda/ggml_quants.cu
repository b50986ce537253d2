// ggml block quantization (Q8_0, Q4_K, Q5_K, Q6_K) on the GPU, byte-identical to the CPU twin
// (cpu/ggml_quants_cpu.cpp) because both run the same per-block functions of src/ggml_quants.h, whose float
// operations are explicit round-to-nearest intrinsics on the device (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn:
// never contracted into an FMA, never approximated; CMake also passes --fmad=false).
//
// One launch on the caller's stream, no allocation, no sync: one thread per block (a 32-element Q8_0 block or a
// 256-element K-quant super-block). Rows are contiguous and a multiple of the block size (checked by the export), so
// block b reads x[b * elements, (b + 1) * elements) and writes out[b * bytes, (b + 1) * bytes): 64-bit offsets.
// The K-quant search keeps its 256 levels and 32 weights in thread-local memory; the work per super-block (~20 grid
// stretches over 8 sub-blocks) dwarfs the uncoalesced loads, which the L1 cache serves after the first touch.
#include "cuda_common.cuh"
#include "../src/ggml_quants.h"

namespace sloth::cuda {
namespace {

constexpr int kThreads = 128;

template <int32_t kType>
__global__ void __launch_bounds__(kThreads) ggml_quantize_kernel(const float* __restrict__ x, int64_t blocks,
                                                                 uint8_t* __restrict__ out) {
    const int64_t b = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
    if (b >= blocks) return;
    constexpr int64_t kElements = kType == ggml::kTypeQ8_0 ? ggml::kQk8_0 : ggml::kQkK;
    constexpr int64_t kBytes = kType == ggml::kTypeQ8_0   ? ggml::kBytesQ8_0
                               : kType == ggml::kTypeQ4_K ? ggml::kBytesQ4_K
                               : kType == ggml::kTypeQ5_K ? ggml::kBytesQ5_K
                                                          : ggml::kBytesQ6_K;
    const float* xb = x + b * kElements;
    uint8_t* yb = out + b * kBytes;
    if constexpr (kType == ggml::kTypeQ8_0) ggml::quantize_block_q8_0(xb, yb);
    else if constexpr (kType == ggml::kTypeQ4_K) ggml::quantize_block_q4_k(xb, yb);
    else if constexpr (kType == ggml::kTypeQ5_K) ggml::quantize_block_q5_k(xb, yb);
    else ggml::quantize_block_q6_k(xb, yb);
}

template <int32_t kType>
sloth_status launch(const char* fn, const float* x, int64_t blocks, uint8_t* out, cudaStream_t stream) {
    const int64_t grid = ceil_div(blocks, kThreads);
    SLOTH_CHECK(require_one_launch(fn, grid));
    ggml_quantize_kernel<kType><<<dim3(static_cast<unsigned>(grid)), kThreads, 0, stream>>>(x, blocks, out);
    SLOTH_LAUNCH_CHECK(fn, "ggml_quantize_kernel");
    return SLOTH_OK;
}

}  // namespace

sloth_status ggml_quantize(const char* fn, const GgmlQuantArgs& a, int32_t device, void* stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    const auto s = static_cast<cudaStream_t>(stream);
    const int64_t blocks = a.rows * (a.row_length / ggml::block_elements(a.type));
    auto* out = static_cast<uint8_t*>(a.out);
    switch (a.type) {
        case ggml::kTypeQ8_0: return launch<ggml::kTypeQ8_0>(fn, a.x, blocks, out, s);
        case ggml::kTypeQ4_K: return launch<ggml::kTypeQ4_K>(fn, a.x, blocks, out, s);
        case ggml::kTypeQ5_K: return launch<ggml::kTypeQ5_K>(fn, a.x, blocks, out, s);
        case ggml::kTypeQ6_K: return launch<ggml::kTypeQ6_K>(fn, a.x, blocks, out, s);
        default: return fail(SLOTH_ERROR_INTERNAL, "%s: ggml type %d reached the CUDA backend unvalidated", fn, a.type);
    }
}

}  // namespace sloth::cuda
