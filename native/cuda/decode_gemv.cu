// Dense y = x W^T for a few activation rows (the decoder's LM head and LoRA factors; CPU twin in
// cpu/decode_ops_cpu.cpp), with the epilogue the decoder needs: a scale, accumulation into y, float32 output with a
// soft-cap. Built like the NF4 GEMV (nf4_gemv_kernels.cuh): the weight is the only large stream, so each warp owns kRowsPerWarp rows and a
// lane reads 16 bytes of each per step (one warp-wide load covers 512 contiguous bytes), streamed past L1 with an
// L2 evict-first policy; x (a few KB) is read through the cache by every warp. Products accumulate in float32
// registers, a shuffle butterfly reduces each sum in a fixed order. Batches above 8 run in 8-row chunks (the
// weight is read once per chunk; the decoder uses cuBLASLt there for f16/bf16).
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ptx.cuh"

namespace sloth::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kRowsPerWarp = 2;
constexpr int kRowsPerBlock = (kThreads / 32) * kRowsPerWarp;

// The 16 bytes at element i as float32 values (8 for bf16/f16, 4 for f32).
template <int kDtype>
__device__ __forceinline__ void unpack16(uint4 q, float* v) {
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        if constexpr (kDtype == SLOTH_DTYPE_F32) {
            v[k] = __uint_as_float(w[k]);
        } else if constexpr (kDtype == SLOTH_DTYPE_BF16) {
            v[2 * k] = __uint_as_float(w[k] << 16);
            v[2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
        } else {
            v[2 * k] = f16_bits_to_f32(static_cast<uint16_t>(w[k] & 0xFFFFu));
            v[2 * k + 1] = f16_bits_to_f32(static_cast<uint16_t>(w[k] >> 16));
        }
    }
}

template <int kDtype, int kBatch, bool kVector>
__global__ void __launch_bounds__(kThreads) dense_gemv_kernel(const void* __restrict__ x, const void* __restrict__ w,
                                                              int64_t k, int64_t m, float scale, bool accumulate,
                                                              bool out_f32, float softcap, void* __restrict__ y) {
    constexpr int kPer = kDtype == SLOTH_DTYPE_F32 ? 4 : 8;  // elements per 16 bytes
    constexpr int kSize = kDtype == SLOTH_DTYPE_F32 ? 4 : 2;
    const int lane = threadIdx.x & 31;
    grid_dependency_wait();  // x (and y when accumulating) come from the previous kernels
    allow_dependent_launch();
    const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5) * kRowsPerWarp;
    if (row0 >= m) return;
    int64_t rows[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) rows[r] = row0 + r < m ? row0 + r : m - 1;
    float acc[kRowsPerWarp][kBatch];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
        for (int b = 0; b < kBatch; ++b) acc[r][b] = 0.0f;
    if constexpr (kVector) {
        const uint64_t stream = ptx::policy_evict_first();
        const int64_t chunks = k / kPer;
        for (int64_t q = lane; q < chunks; q += 32) {
            float wv[kRowsPerWarp][kPer];
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r)
                unpack16<kDtype>(ptx::load_stream_v4(static_cast<const char*>(w) + (rows[r] * k + q * kPer) * kSize, stream), wv[r]);
#pragma unroll
            for (int b = 0; b < kBatch; ++b) {
                float xv[kPer];
                unpack16<kDtype>(ptx::load_cached_v4(static_cast<const char*>(x) + (b * k + q * kPer) * kSize), xv);
#pragma unroll
                for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
                    for (int e = 0; e < kPer; ++e) acc[r][b] = __fmaf_rn(xv[e], wv[r][e], acc[r][b]);
            }
        }
    } else {
        for (int64_t c = lane; c < k; c += 32) {
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) {
                const float wv = load_f32<kDtype>(w, rows[r] * k + c);
#pragma unroll
                for (int b = 0; b < kBatch; ++b) acc[r][b] = __fmaf_rn(load_f32<kDtype>(x, b * k + c), wv, acc[r][b]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
            float v = acc[r][b];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xFFFFFFFFu, v, off));
            if (lane != 0 || row0 + r >= m) continue;
            const int64_t o = b * m + row0 + r;
            v = round_to<kDtype>(v);
            if (scale != 1.0f) v = round_to<kDtype>(__fmul_rn(v, scale));
            if (out_f32) {
                static_cast<float*>(y)[o] = softcap > 0.0f ? __fmul_rn(softcap, tanhf(__fdiv_rn(v, softcap))) : v;
            } else {
                if (accumulate) v = __fadd_rn(load_f32<kDtype>(y, o), v);
                store_f32<kDtype>(y, o, v);
            }
        }
    }
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
