// RMSNorm forward and backward (LlamaRMSNorm's roundings, or GemmaRMSNorm's (1 + w) form in float32 when kUnitOffset;
// see slothsharp.h). One thread block per row for the
// forward and dX: the row's sum is a warp-shuffle reduction plus a fixed-order sum of the per-warp partials, so a
// row always gives the same bits; dW is a separate column-parallel kernel, deterministic too (no atomics).
// y may alias x and grad_x may alias grad_out: every element is read and written by the same thread, after the
// barrier that ends the row's reads, so those pointers are deliberately not __restrict__.
#include "cuda_common.cuh"
#include "dtype.cuh"

namespace sloth::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Sum of v over the block, the same value in every thread; ends with a barrier so it can be called again.
__device__ __forceinline__ float block_sum(float v, float* s_part) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xFFFFFFFFu, v, off));
    if ((threadIdx.x & 31) == 0) s_part[threadIdx.x >> 5] = v;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) total = __fadd_rn(total, s_part[k]);
    __syncthreads();
    return total;
}

template <int kDtype, bool kUnitOffset>
__global__ void __launch_bounds__(kThreads) rms_norm_forward_kernel(const void* x, const void* __restrict__ weight,
                                                                     int64_t cols, float eps, void* y,
                                                                     float* __restrict__ rstd_out) {
    __shared__ float s_part[kWarps];
    const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
        const float v = load_f32<kDtype>(x, base + j);
        ss = __fadd_rn(ss, __fmul_rn(v, v));
    }
    ss = block_sum(ss, s_part);
    const float var = __fdiv_rn(ss, static_cast<float>(cols));
    const float rstd = __frcp_rn(__fsqrt_rn(__fadd_rn(var, eps)));
    if (threadIdx.x == 0 && rstd_out != nullptr) rstd_out[blockIdx.x] = rstd;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
        const float xhat = __fmul_rn(load_f32<kDtype>(x, base + j), rstd);
        if constexpr (kUnitOffset)
            store_f32<kDtype>(y, base + j, __fmul_rn(xhat, __fadd_rn(1.0f, load_f32<kDtype>(weight, j))));
        else
            store_f32<kDtype>(y, base + j, __fmul_rn(load_f32<kDtype>(weight, j), round_to<kDtype>(xhat)));
    }
}

// g = dy * w rounded to the dtype (Llama), or dy * (1 + w) in float32 (Gemma).
template <int kDtype, bool kUnitOffset>
__device__ __forceinline__ float upstream(const void* grad_out, const void* weight, int64_t i, int64_t j) {
    const float dy = load_f32<kDtype>(grad_out, i), w = load_f32<kDtype>(weight, j);
    if constexpr (kUnitOffset) return __fmul_rn(dy, __fadd_rn(1.0f, w));
    else return round_to<kDtype>(__fmul_rn(dy, w));
}

template <int kDtype, bool kUnitOffset>
__global__ void __launch_bounds__(kThreads) rms_norm_backward_kernel(const void* grad_out, const void* __restrict__ x,
                                                                      const void* __restrict__ weight,
                                                                      const float* __restrict__ rstd, int64_t cols,
                                                                      void* grad_x) {
    __shared__ float s_part[kWarps];
    const int64_t base = static_cast<int64_t>(blockIdx.x) * cols;
    const float r = rstd[blockIdx.x];
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
        const float g = upstream<kDtype, kUnitOffset>(grad_out, weight, base + j, j);
        dot = __fadd_rn(dot, __fmul_rn(g, __fmul_rn(load_f32<kDtype>(x, base + j), r)));
    }
    dot = block_sum(dot, s_part);
    const float mean = __fdiv_rn(dot, static_cast<float>(cols));
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
        const float g = upstream<kDtype, kUnitOffset>(grad_out, weight, base + j, j);
        const float xhat = __fmul_rn(load_f32<kDtype>(x, base + j), r);
        store_f32<kDtype>(grad_x, base + j, __fmul_rn(r, __fsub_rn(g, __fmul_rn(xhat, mean))));
    }
}

// dW[j] = sum over rows of dy * h: thread (lane, warp) of block c sums column 32 c + lane over rows warp,
// warp + 32, ...; the 32 partial sums are then added in warp order (deterministic, no atomics). 1024 threads per
// block: a hidden size of 2048 gives only 64 blocks, so each needs many rows in flight.
constexpr int kDwThreads = 1024;
constexpr int kDwWarps = kDwThreads / 32;

template <int kDtype, bool kUnitOffset>
__global__ void __launch_bounds__(kDwThreads) rms_norm_dweight_kernel(const void* __restrict__ grad_out,
                                                                     const void* __restrict__ x,
                                                                     const float* __restrict__ rstd, int64_t rows,
                                                                     int64_t cols, float* __restrict__ grad_weight) {
    __shared__ float s_acc[kDwWarps][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t j = static_cast<int64_t>(blockIdx.x) * 32 + lane;
    float acc = 0.0f;
    if (j < cols) {
        for (int64_t r = warp; r < rows; r += kDwWarps) {
            const float xhat = __fmul_rn(load_f32<kDtype>(x, r * cols + j), rstd[r]);
            const float h = kUnitOffset ? xhat : round_to<kDtype>(xhat);  // Gemma: h stays float32
            acc = __fadd_rn(acc, __fmul_rn(load_f32<kDtype>(grad_out, r * cols + j), h));
        }
    }
    s_acc[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && j < cols) {
        float total = 0.0f;
        for (int k = 0; k < kDwWarps; ++k) total = __fadd_rn(total, s_acc[k][lane]);
        grad_weight[j] = total;
    }
}

template <int kDtype, bool kUnitOffset>
sloth_status launch_forward(const char* fn, const RmsNormArgs& a, cudaStream_t stream) {
    SLOTH_CHECK(require_one_launch(fn, a.rows));
    rms_norm_forward_kernel<kDtype, kUnitOffset><<<dim3(static_cast<unsigned>(a.rows)), kThreads, 0, stream>>>(
        a.x, a.weight, a.cols, a.eps, a.y, a.rstd);
    SLOTH_LAUNCH_CHECK(fn, "rms_norm_forward_kernel");
    return SLOTH_OK;
}

template <int kDtype, bool kUnitOffset>
sloth_status launch_backward(const char* fn, const RmsNormArgs& a, cudaStream_t stream) {
    SLOTH_CHECK(require_one_launch(fn, a.rows));
    // dW first: grad_x may alias grad_out, which dW reads.
    if (a.grad_weight != nullptr) {
        rms_norm_dweight_kernel<kDtype, kUnitOffset><<<dim3(static_cast<unsigned>(ceil_div(a.cols, 32))), kDwThreads, 0, stream>>>(
            a.grad_out, a.x, a.rstd, a.rows, a.cols, a.grad_weight);
        SLOTH_LAUNCH_CHECK(fn, "rms_norm_dweight_kernel");
    }
    rms_norm_backward_kernel<kDtype, kUnitOffset><<<dim3(static_cast<unsigned>(a.rows)), kThreads, 0, stream>>>(
        a.grad_out, a.x, a.weight, a.rstd, a.cols, a.y);
    SLOTH_LAUNCH_CHECK(fn, "rms_norm_backward_kernel");
    return SLOTH_OK;
}

}  // namespace

sloth_status rms_norm_forward(const char* fn, const RmsNormArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) {
                                return a.unit_offset ? launch_forward<decltype(dt)::value, true>(fn, a, s)
                                                     : launch_forward<decltype(dt)::value, false>(fn, a, s);
                            });
}

sloth_status rms_norm_backward(const char* fn, const RmsNormArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) {
                                return a.unit_offset ? launch_backward<decltype(dt)::value, true>(fn, a, s)
                                                     : launch_backward<decltype(dt)::value, false>(fn, a, s);
                            });
}

}  // namespace sloth::cuda
