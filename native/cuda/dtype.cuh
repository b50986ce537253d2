// Per-element dtype handling for the CUDA kernels, chosen at compile time (kDtype is a sloth_dtype): load as float32,
// store with round-to-nearest-even, and "round to the dtype and widen again" (what PyTorch stores after an
// operation in that dtype). The same conversions as float_convert.h on the host, so CPU and GPU agree bit for bit.
#pragma once
#include "ptx.cuh"
#include "slothsharp.h"

#include <cstdint>

namespace sloth::cuda {

__device__ __forceinline__ float f16_bits_to_f32(uint16_t bits) {
    float f;
    asm("{ .reg .f16 h; mov.b16 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "h"(bits));
    return f;
}

// Eight consecutive bf16 or f16 elements as a 16-byte load holds them (little-endian: element 2k in the low half of
// word k), widened to float32 as load_f32 widens each.
template <int kDtype>
__device__ __forceinline__ void widen8(uint4 w, float (&v)[8]) {
    static_assert(kDtype == SLOTH_DTYPE_BF16 || kDtype == SLOTH_DTYPE_F16, "16-bit dtypes");
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        if constexpr (kDtype == SLOTH_DTYPE_BF16) {
            v[2 * k] = __uint_as_float(words[k] << 16);
            v[2 * k + 1] = __uint_as_float(words[k] & 0xFFFF0000u);
        } else {
            v[2 * k] = f16_bits_to_f32(static_cast<uint16_t>(words[k] & 0xFFFFu));
            v[2 * k + 1] = f16_bits_to_f32(static_cast<uint16_t>(words[k] >> 16));
        }
    }
}

template <int kDtype>
__device__ __forceinline__ float load_f32(const void* p, int64_t i) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) return static_cast<const float*>(p)[i];
    else if constexpr (kDtype == SLOTH_DTYPE_BF16)
        return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16);
    else return f16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
}

template <int kDtype>
__device__ __forceinline__ void store_f32(void* p, int64_t i, float v) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) static_cast<float*>(p)[i] = v;
    else if constexpr (kDtype == SLOTH_DTYPE_BF16) static_cast<uint16_t*>(p)[i] = ptx::to_bf16_bits(v);
    else static_cast<uint16_t*>(p)[i] = ptx::to_f16_bits(v);
}

template <int kDtype>
__device__ __forceinline__ float round_to(float v) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) return v;
    else if constexpr (kDtype == SLOTH_DTYPE_BF16) return __uint_as_float(static_cast<uint32_t>(ptx::to_bf16_bits(v)) << 16);
    else return f16_bits_to_f32(ptx::to_f16_bits(v));
}

// Two values rounded to the 16-bit dtype and packed, `lo` in the low half (one conversion instruction, which rounds its
// two halves independently: each gets the rounding round_to gives it alone). For the 16-bit dtypes only; kernels
// instantiated for float32 but never launched with it (the tile GEMVs) compile the f16 form.
template <int kDtype>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    if constexpr (kDtype == SLOTH_DTYPE_BF16) return ptx::pack_bf16x2(lo, hi);
    else return ptx::pack_f16x2(lo, hi);
}

// The two 16-bit values of a packed word (the low half first), widened exactly (pack2's dtypes).
template <int kDtype>
__device__ __forceinline__ void widen2(uint32_t p, float& lo, float& hi) {
    if constexpr (kDtype == SLOTH_DTYPE_BF16) {
        lo = __uint_as_float(p << 16), hi = __uint_as_float(p & 0xFFFF0000u);
    } else {
        lo = f16_bits_to_f32(static_cast<uint16_t>(p & 0xFFFFu)), hi = f16_bits_to_f32(static_cast<uint16_t>(p >> 16));
    }
}

// Two values rounded to the dtype by one packed conversion: each gets the rounding round_to gives it alone, for half
// the conversions.
template <int kDtype>
__device__ __forceinline__ void round2_to(float a, float b, float& ra, float& rb) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) ra = a, rb = b;
    else widen2<kDtype>(pack2<kDtype>(a, b), ra, rb);
}

// Grid size for a grid-stride loop over `count` items with `threads` per block (at least 1 block, at most 2^20:
// enough to fill any GPU; the loop covers the rest).
inline unsigned grid_for(int64_t count, int threads) {
    const int64_t blocks = (count + threads - 1) / threads;
    const int64_t capped = blocks < 1 ? 1 : (blocks > (int64_t{1} << 20) ? (int64_t{1} << 20) : blocks);
    return static_cast<unsigned>(capped);
}

}  // namespace sloth::cuda
