// Exact float32 <-> bf16 / fp16 conversions (round to nearest, ties to even), written out so the CPU results are
// bit-identical to the GPU's cvt.rn instructions regardless of the host compiler's half-float support.
#pragma once
#include "slothsharp.h"

#include <cstdint>
#include <cstring>

namespace sloth::cpu {

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline uint16_t f32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
    return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN
    if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to infinity
    if (a < 0x38800000u) {                                             // below 2^-14: fp16 subnormal or zero
        if (a < 0x33000000u) return static_cast<uint16_t>(sign);        // < 2^-25 (and 2^-25 ties to even 0)
        const uint32_t e = a >> 23;
        const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126u - e;  // value / 2^-24 = m >> shift
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return static_cast<uint16_t>(sign | q);
    }
    uint32_t h = (((a >> 23) - 112u) << 10) | ((a & 0x7FFFFFu) >> 13);
    const uint32_t rem = a & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is correct
    return static_cast<uint16_t>(sign | h);
}

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1Fu;
    const uint32_t m = h & 0x3FFu;
    if (e == 0x1Fu) return f32_from_bits(sign | 0x7F800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return f32_from_bits(sign);
        const float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24, exact
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

// dtype has been validated by the export: F32, F16 or BF16.
inline float load_as_f32(const void* base, sloth_dtype dtype, int64_t i) {
    switch (dtype) {
        case SLOTH_DTYPE_F32: return static_cast<const float*>(base)[i];
        case SLOTH_DTYPE_F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
        default: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    }
}

inline void store_from_f32(void* base, sloth_dtype dtype, int64_t i, float v) {
    switch (dtype) {
        case SLOTH_DTYPE_F32: static_cast<float*>(base)[i] = v; break;
        case SLOTH_DTYPE_F16: static_cast<uint16_t*>(base)[i] = f32_to_f16(v); break;
        default: static_cast<uint16_t*>(base)[i] = f32_to_bf16(v); break;
    }
}

// v rounded to dtype and widened again: what PyTorch stores after an operation in that dtype.
inline float round_to(sloth_dtype dtype, float v) {
    switch (dtype) {
        case SLOTH_DTYPE_F32: return v;
        case SLOTH_DTYPE_F16: return f16_to_f32(f32_to_f16(v));
        default: return bf16_to_f32(f32_to_bf16(v));
    }
}

}  // namespace sloth::cpu
