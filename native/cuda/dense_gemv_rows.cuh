// One warp's rows of the dense decode GEMV (decode_gemv.cu, whose header says how it is built), shared by its kernel and
// the persistent decode step's LM head (decode_persistent.cuh): the same loads, products and reduction order, so the
// same bits.
#pragma once

#include "dtype.cuh"
#include "ptx.cuh"

#include <cstdint>

namespace sloth::cuda {

constexpr int kDenseRowsPerWarp = 2;

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

// Rows [row0, row0 + kDenseRowsPerWarp) of y = x W^T for kBatch activation rows, by the calling warp. x16(b, q): the 16
// bytes of x's row b at chunk q (the vector path); x: the same rows in memory (the element path).
template <int kDtype, int kBatch, bool kVector, class X16>
__device__ __forceinline__ void dense_warp_rows(const X16& x16, const void* __restrict__ x, const void* __restrict__ w,
                                                int64_t k, int64_t m, int64_t row0, float scale, bool accumulate,
                                                bool out_f32, float softcap, void* __restrict__ y) {
    constexpr int kPer = kDtype == SLOTH_DTYPE_F32 ? 4 : 8;  // elements per 16 bytes
    constexpr int kSize = kDtype == SLOTH_DTYPE_F32 ? 4 : 2;
    const int lane = threadIdx.x & 31;
    if (row0 >= m) return;
    int64_t rows[kDenseRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kDenseRowsPerWarp; ++r) rows[r] = row0 + r < m ? row0 + r : m - 1;
    float acc[kDenseRowsPerWarp][kBatch];
#pragma unroll
    for (int r = 0; r < kDenseRowsPerWarp; ++r)
#pragma unroll
        for (int b = 0; b < kBatch; ++b) acc[r][b] = 0.0f;
    if constexpr (kVector) {
        const uint64_t stream = ptx::policy_evict_first();
        const int64_t chunks = k / kPer;
        for (int64_t q = lane; q < chunks; q += 32) {
            float wv[kDenseRowsPerWarp][kPer];
#pragma unroll
            for (int r = 0; r < kDenseRowsPerWarp; ++r)
                unpack16<kDtype>(ptx::load_stream_v4(static_cast<const char*>(w) + (rows[r] * k + q * kPer) * kSize, stream), wv[r]);
#pragma unroll
            for (int b = 0; b < kBatch; ++b) {
                float xv[kPer];
                unpack16<kDtype>(x16(b, q), xv);
#pragma unroll
                for (int r = 0; r < kDenseRowsPerWarp; ++r)
#pragma unroll
                    for (int e = 0; e < kPer; ++e) acc[r][b] = __fmaf_rn(xv[e], wv[r][e], acc[r][b]);
            }
        }
    } else {
        for (int64_t c = lane; c < k; c += 32) {
#pragma unroll
            for (int r = 0; r < kDenseRowsPerWarp; ++r) {
                const float wv = load_f32<kDtype>(w, rows[r] * k + c);
#pragma unroll
                for (int b = 0; b < kBatch; ++b) acc[r][b] = __fmaf_rn(load_f32<kDtype>(x, b * k + c), wv, acc[r][b]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kDenseRowsPerWarp; ++r) {
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

}  // namespace sloth::cuda
