// Dense y = x W^T for a few activation rows (the decoder's LM head and LoRA factors; CPU twin in
// cpu/decode_ops_cpu.cpp), with the epilogue the decoder needs: a scale, accumulation into y, float32 output with a
// soft-cap. Built like the NF4 GEMV (nf4_gemv_kernels.cuh): the weight is the only large stream, so each warp owns kDenseRowsPerWarp rows and a
// lane reads 16 bytes of each per step (one warp-wide load covers 512 contiguous bytes), streamed past L1 with an
// L2 evict-first policy; x (a few KB) is read through the cache by every warp. Products accumulate in float32
// registers, a shuffle butterfly reduces each sum in a fixed order. Batches above 8 run in 8-row chunks (the
// weight is read once per chunk; the decoder uses cuBLASLt there for f16/bf16).
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "dense_gemv_rows.cuh"
#include "dtype.cuh"
#include "ptx.cuh"

namespace sloth::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kRowsPerBlock = (kThreads / 32) * kDenseRowsPerWarp;

// x read by the kernel: the 16 bytes of row b at chunk q (dense_warp_rows' X16).
template <int kDtype>
struct DenseX {
    const void* x;
    int64_t k;
    __device__ __forceinline__ uint4 operator()(int b, int64_t q) const {
        constexpr int kPer = kDtype == SLOTH_DTYPE_F32 ? 4 : 8, kSize = kDtype == SLOTH_DTYPE_F32 ? 4 : 2;
        return ptx::load_cached_v4(static_cast<const char*>(x) + (b * k + q * kPer) * kSize);
    }
};

template <int kDtype, int kBatch, bool kVector>
__global__ void __launch_bounds__(kThreads) dense_gemv_kernel(const void* __restrict__ x, const void* __restrict__ w,
                                                              int64_t k, int64_t m, float scale, bool accumulate,
                                                              bool out_f32, float softcap, void* __restrict__ y) {
    launch_dependents_early();
    grid_dependency_wait();  // x (and y when accumulating) come from the previous kernels
    launch_dependents_after_wait();
    const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5) * kDenseRowsPerWarp;
    dense_warp_rows<kDtype, kBatch, kVector>(DenseX<kDtype>{x, k}, x, w, k, m, row0, scale, accumulate, out_f32, softcap, y);
}

template <int kDtype, int kBatch>
sloth_status launch(const char* fn, const DenseGemvArgs& a, const void* x, void* y, cudaStream_t stream) {
    const int64_t blocks = ceil_div(a.m, kRowsPerBlock);
    SLOTH_CHECK(require_one_launch(fn, blocks));
    constexpr int kPer = kDtype == SLOTH_DTYPE_F32 ? 4 : 8;
    const bool vector = a.k % kPer == 0 && reinterpret_cast<uintptr_t>(a.w) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
    const dim3 grid(static_cast<unsigned>(blocks));
    SLOTH_KERNEL_LAUNCH(fn, "dense_gemv_kernel",
                        launch_kernel(vector ? dense_gemv_kernel<kDtype, kBatch, true> : dense_gemv_kernel<kDtype, kBatch, false>, grid,
                                      kThreads, stream, x, a.w, a.k, a.m, a.scale, a.accumulate, a.out_f32, a.softcap, y));
    return SLOTH_OK;
}

template <int kDtype>
sloth_status launch_chunks(const char* fn, const DenseGemvArgs& a, cudaStream_t s) {
    const int64_t xs = a.k * dtype_size(a.dtype), ys = a.m * (a.out_f32 ? 4 : dtype_size(a.dtype));
    for (int64_t b0 = 0; b0 < a.batch; b0 += 8) {
        const int64_t n = a.batch - b0 < 8 ? a.batch - b0 : 8;
        const void* x = static_cast<const char*>(a.x) + b0 * xs;
        void* y = static_cast<char*>(a.y) + b0 * ys;
        sloth_status st;
        switch (n) {
            case 1: st = launch<kDtype, 1>(fn, a, x, y, s); break;
            case 2: st = launch<kDtype, 2>(fn, a, x, y, s); break;
            case 3: st = launch<kDtype, 3>(fn, a, x, y, s); break;
            case 4: st = launch<kDtype, 4>(fn, a, x, y, s); break;
            case 5: st = launch<kDtype, 5>(fn, a, x, y, s); break;
            case 6: st = launch<kDtype, 6>(fn, a, x, y, s); break;
            case 7: st = launch<kDtype, 7>(fn, a, x, y, s); break;
            default: st = launch<kDtype, 8>(fn, a, x, y, s); break;
        }
        SLOTH_CHECK(st);
    }
    return SLOTH_OK;
}

}  // namespace

sloth_status dense_gemv(const char* fn, const DenseGemvArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) { return launch_chunks<decltype(dt)::value>(fn, a, s); });
}

}  // namespace sloth::cuda
