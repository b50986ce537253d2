// The decoder's RMSNorm pieces on the device, shared by decode_ops.cu (the residual-norm kernels) and nf4_gemv_kernels.cuh
// (the grouped GEMV that normalizes its own input: one launch fewer per norm), so both give the same bits: float32,
// each operation rounded as PyTorch's RMSNorm in the compute dtype does it.
#pragma once

#include "dtype.cuh"

#include <cstdint>

namespace sloth::cuda {

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xFFFFFFFFu, v, off));
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < warps; ++w) total = __fadd_rn(total, scratch[w]);
    return total;
}

__device__ __forceinline__ float rstd_from(float ss, int64_t n, float eps) {
    const float var = __fdiv_rn(ss, static_cast<float>(n));
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
}

template <int kDtype>
__device__ __forceinline__ float norm_value(float x, float rstd, float w, bool unit_offset) {
    const float xhat = __fmul_rn(x, rstd);
    return unit_offset ? round_to<kDtype>(__fmul_rn(xhat, __fadd_rn(1.0f, w))) : round_to<kDtype>(__fmul_rn(w, round_to<kDtype>(xhat)));
}

}  // namespace sloth::cuda
