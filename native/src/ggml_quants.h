// ggml's reference block quantizers Q8_0, Q4_K, Q5_K and Q6_K (no importance matrix) as one set of functions compiled
// for the host (cpu/ggml_quants_cpu.cpp) and for the GPU (cuda/ggml_quants.cu), byte-identical to the C# quantizers
// (src/Api/Gguf/LegacyQuants.cs Q8_0, KQuants.cs scalar paths), which are byte-identical to llama.cpp.
//
// Float semantics (what byte identity rests on):
//  - Every float multiply, add, subtract, divide and square root goes through qmul/qadd/qsub/qdiv/qsqrt, in the
//    order and grouping of the C# code (left to right, as C# evaluates). On the device they are __fmul_rn,
//    __fadd_rn, __fsub_rn, __fdiv_rn, __fsqrt_rn: IEEE round-to-nearest single precision, never contracted into an
//    FMA and never approximated, whatever --fmad / --use_fast_math say. On the host they are the plain operators,
//    which are the same IEEE operations because the library is built for x86-64 (SSE scalar single precision, no
//    x87) with -ffp-contract=off and without -ffast-math (native/CMakeLists.txt): GCC then never fuses a*b+c even
//    where -mfma would allow it. A -ffast-math build is refused below.
//  - |x|, comparisons, int <-> float conversions of small integers, and the f16 conversions (integer code below)
//    are exact, so they need no care.
//  - Subnormals are kept on both sides: x86 runs with the default MXCSR (no flush-to-zero), and the device code must
//    not be built with -ftz=true or --use_fast_math (refused below where nvcc says so).
//  - NaN bits reach the output (nearest_int's mantissa trick, the f16 payload), and NaNs arise from finite input
//    (0 * inf after an overflowing reciprocal of a subnormal range). The device helpers return the NaN that x86 SSE
//    returns (x86_result below) where NaNs arise from finite input. For NaN input they were not enough: on the H100 a
//    NaN-led Q4_K/Q5_K sub-block still got other bytes than x86 (round 10, bench/results/2026-12-06-h100-round10), so
//    the device's bytes for NaN input are unspecified (slothsharp.h) and the managed wrapper (NativeGgmlQuantizer)
//    quantizes a non-finite tensor on the CPU. Finite input, subnormal sub-blocks included, gives the same bytes.
#pragma once

#include <stdint.h>

#if !defined(__CUDA_ARCH__)
#include <string.h>
#include <math.h>
#if defined(__FAST_MATH__)
#error "ggml_quants.h needs IEEE float semantics: build without -ffast-math"
#endif
#endif
#if defined(__USE_FAST_MATH__)
#error "ggml_quants.h needs IEEE float semantics (subnormals kept): build without --use_fast_math"
#endif

// nvcc defines __CUDACC__; clang's CUDA mode defines __CUDA__ (and __CUDACC__ only through its wrapper headers).
#if defined(__CUDACC__) || defined(__CUDA__)
#define SLOTH_GGML_HD __host__ __device__ inline
#else
#define SLOTH_GGML_HD inline
#endif

namespace sloth::ggml {

// ggml's type numbers (ggml.h enum ggml_type), the values sloth_ggml_quantize takes.
constexpr int32_t kTypeQ8_0 = 8;
constexpr int32_t kTypeQ4_K = 12;
constexpr int32_t kTypeQ5_K = 13;
constexpr int32_t kTypeQ6_K = 14;

constexpr int kQk8_0 = 32;   // Q8_0 block: 32 elements
constexpr int kQkK = 256;    // K-quant super-block: 256 elements
constexpr int kBytesQ8_0 = 34;
constexpr int kBytesQ4_K = 144;
constexpr int kBytesQ5_K = 176;
constexpr int kBytesQ6_K = 210;

// Elements and bytes of one block of `type`; 0 for a type this header does not quantize.
SLOTH_GGML_HD int block_elements(int32_t type) {
    return type == kTypeQ8_0 ? kQk8_0 : (type == kTypeQ4_K || type == kTypeQ5_K || type == kTypeQ6_K) ? kQkK : 0;
}
SLOTH_GGML_HD int block_bytes(int32_t type) {
    switch (type) {
        case kTypeQ8_0: return kBytesQ8_0;
        case kTypeQ4_K: return kBytesQ4_K;
        case kTypeQ5_K: return kBytesQ5_K;
        case kTypeQ6_K: return kBytesQ6_K;
        default: return 0;
    }
}

// ---- exact helpers ---------------------------------------------------------------------------------------------

SLOTH_GGML_HD uint32_t f2u(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

SLOTH_GGML_HD float u2f(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

// x86 SSE's NaN results, which the host and .NET produce: an operation on a NaN operand returns that NaN made quiet
// (the first operand's when both are NaN); an invalid operation on numbers (inf - inf, 0 * inf, 0 / 0, sqrt(-1))
// returns the "default NaN" 0xFFC00000. The GPU returns 0x7FFFFFFF in every case, and NaN bits do reach the output
// (nearest_int's mantissa trick, the f16 payload): e.g. a sub-block of subnormals makes nmax / (max - min) infinite
// and 0 * inf a NaN whose bits pick the level. So the result is chosen from the operands' and the result's bits,
// with integer tests only: round 9's first form, a float self-compare (r != r) selecting the replacement, left the
// GPU's 0x7FFFFFFF in place on the H100 (a NaN-led Q4_K sub-block got the min level 63 where x86 gives 0; emulating
// "the GPU's NaN, not replaced" on the host reproduces that byte exactly), so no float compare decides it now.
// On the host it serves tools/sim/ggml_device_nan (SLOTH_GGML_EMULATE_DEVICE_NAN: the host's operations with every NaN
// result made the GPU's 0x7FFFFFFF, then passed through here), which checks this logic on NaN-laden blocks.
SLOTH_GGML_HD float x86_result(float r, float a, float b) {
    const uint32_t ua = f2u(a), ub = f2u(b), ur = f2u(r);
    if ((ua & 0x7FFFFFFFu) > 0x7F800000u) return u2f(ua | 0x00400000u);
    if ((ub & 0x7FFFFFFFu) > 0x7F800000u) return u2f(ub | 0x00400000u);
    if ((ur & 0x7FFFFFFFu) > 0x7F800000u) return u2f(0xFFC00000u);
    return r;
}
#if !defined(__CUDA_ARCH__) && defined(SLOTH_GGML_EMULATE_DEVICE_NAN)
SLOTH_GGML_HD float gpu_nan(float r) { return r != r ? u2f(0x7FFFFFFFu) : r; }
#define SLOTH_GGML_HOST_OP(r, a, b) x86_result(gpu_nan(r), a, b)
#else
#define SLOTH_GGML_HOST_OP(r, a, b) (r)
#endif


// The rounded single-precision operations (see the top of the file).
SLOTH_GGML_HD float qmul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return x86_result(__fmul_rn(a, b), a, b);
#else
    return SLOTH_GGML_HOST_OP(a * b, a, b);
#endif
}
SLOTH_GGML_HD float qadd(float a, float b) {
#if defined(__CUDA_ARCH__)
    return x86_result(__fadd_rn(a, b), a, b);
#else
    return SLOTH_GGML_HOST_OP(a + b, a, b);
#endif
}
SLOTH_GGML_HD float qsub(float a, float b) {
#if defined(__CUDA_ARCH__)
    return x86_result(__fsub_rn(a, b), a, b);
#else
    return SLOTH_GGML_HOST_OP(a - b, a, b);
#endif
}
SLOTH_GGML_HD float qdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
    return x86_result(__fdiv_rn(a, b), a, b);
#else
    return SLOTH_GGML_HOST_OP(a / b, a, b);
#endif
}
SLOTH_GGML_HD float qsqrt(float a) {
#if defined(__CUDA_ARCH__)
    return x86_result(__fsqrt_rn(a), a, a);
#else
    return SLOTH_GGML_HOST_OP(sqrtf(a), a, a);
#endif
}

// |x| by clearing the sign bit (what .NET's Math.Abs(float) does, NaN included).
SLOTH_GGML_HD float qabs(float x) { return u2f(f2u(x) & 0x7FFFFFFFu); }

// -x by flipping the sign bit, as x86 and .NET do, NaN included (the device's negation may turn a NaN operand into
// its canonical NaN, whose bits then pick a different level through nearest_int).
SLOTH_GGML_HD float qneg(float x) { return u2f(f2u(x) ^ 0x80000000u); }

SLOTH_GGML_HD bool qisnan(float x) { return (f2u(x) & 0x7FFFFFFFu) > 0x7F800000u; }

// .NET's Math.Max(float, float) (IEEE 754-2019 maximum): a NaN operand is returned (the first one if both are NaN);
// equal values give the second unless it is negative (+0 over -0).
SLOTH_GGML_HD float net_max(float a, float b) {
    if (a != b) {
        if (!qisnan(a)) return b < a ? a : b;
        return a;
    }
    return (f2u(b) >> 31) ? a : b;
}

SLOTH_GGML_HD int imin(int a, int b) { return a < b ? a : b; }
SLOTH_GGML_HD int imax(int a, int b) { return a > b ? a : b; }

// ggml's nearest_int: round half to even through the float's mantissa (valid for |f| <= 2^22; outside that range it
// returns the same garbage as ggml and the C# port, bit for bit).
SLOTH_GGML_HD int nearest_int(float f) {
    const float v = qadd(f, 12582912.0f);
    return static_cast<int>(f2u(v) & 0x007FFFFFu) - 0x00400000;
}

// float -> IEEE half bits, round to nearest even, overflow to infinity, subnormals rounded; NaN keeps its sign and
// the top 10 payload bits and is made quiet (sign | 0x7E00 | payload >> 13), as .NET's (Half) conversion does.
SLOTH_GGML_HD uint16_t f32_to_f16_bits(float f) {
    const uint32_t u = f2u(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a & 0x007FFFFFu) >> 13));
    if (a >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65536 or infinity
    if (a < 0x38800000u) {                                                // below 2^-14: a half subnormal or 0
        const uint32_t exp = a >> 23;
        if (exp < 102) return static_cast<uint16_t>(sign);                // below 2^-25: rounds to 0
        const uint32_t mant = (a & 0x007FFFFFu) | 0x00800000u;           // value = mant * 2^(exp - 150)
        const uint32_t shift = 126 - exp;                                 // 14..24: to units of 2^-24
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) ++h;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = (a - 0x38000000u) >> 13;  // exponent rebiased 127 -> 15, 10 mantissa bits
    const uint32_t rem = a & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry rounds up into the exponent (65520 -> inf)
    return static_cast<uint16_t>(sign | h);
}

// IEEE half bits -> float (exact).
SLOTH_GGML_HD float f16_bits_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0x1Fu) return u2f(sign | 0x7F800000u | (mant << 13));
    if (exp != 0) return u2f(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0) return u2f(sign);
    int e = 113;  // subnormal: normalize
    while (!(mant & 0x400u)) {
        mant <<= 1;
        --e;
    }
    return u2f(sign | (static_cast<uint32_t>(e) << 23) | ((mant & 0x3FFu) << 13));
}

SLOTH_GGML_HD float half_round_trip(float f) { return f16_bits_to_f32(f32_to_f16_bits(f)); }

SLOTH_GGML_HD void write_half(uint8_t* y, float f) {
    const uint16_t h = f32_to_f16_bits(f);
    y[0] = static_cast<uint8_t>(h & 0xFFu);
    y[1] = static_cast<uint8_t>(h >> 8);
}

// MathF.Round(x, MidpointRounding.AwayFromZero) then C#'s (sbyte) cast of the float, which .NET (9+) on x64 does as a
// saturating conversion to int32 (NaN -> 0, +inf -> int.MaxValue, -inf -> int.MinValue) and then keeps the low byte:
// +inf gives -1, -inf 0. (Finite values never leave [-127.5, 127.5] here: |x| <= amax and id = 1 / (amax / 127).)
// Every step is exact: trunc of |x| < 2^23 through int, |x| - trunc(|x|) (no rounding: same binade or smaller), t + 1.
SLOTH_GGML_HD int8_t round_away_to_int8(float x) {
    if (qisnan(x)) return 0;
    const float ax = qabs(x);
    float r = ax;
    if (ax < 8388608.0f) {
        float t = static_cast<float>(static_cast<int32_t>(ax));
        if (qsub(ax, t) >= 0.5f) t = qadd(t, 1.0f);
        r = t;
    }
    const float v = (f2u(x) >> 31) ? -r : r;
    int32_t i;
    if (v >= 2147483648.0f) i = 2147483647;
    else if (v < -2147483648.0f) i = -2147483647 - 1;
    else i = static_cast<int32_t>(v);
    return static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint32_t>(i) & 0xFFu));
}

// ---- Q8_0 --------------------------------------------------------------------------------------------------------

// Block: f16 d = amax / 127, then 32 int8 round-half-away(x / d) (LegacyQuants.Q8_0).
SLOTH_GGML_HD void quantize_block_q8_0(const float* x, uint8_t* y) {
    float amax = 0.0f;
    for (int j = 0; j < kQk8_0; ++j) amax = net_max(amax, qabs(x[j]));
    const float d = qdiv(amax, 127.0f);
    const float id = d != 0.0f ? qdiv(1.0f, d) : 0.0f;
    write_half(y, d);
    for (int j = 0; j < kQk8_0; ++j) y[2 + j] = static_cast<uint8_t>(round_away_to_int8(qmul(x[j], id)));
}

// ---- Q4_K / Q5_K -------------------------------------------------------------------------------------------------

// Asymmetric fit x ~ scale * L + min over n = 32 values (KQuants.MakeQkx2Quants): returns scale, *the_min = -min.
SLOTH_GGML_HD float make_qkx2_quants(int nmax, const float* x, const float* weights, uint8_t* l, float* the_min,
                                     uint8_t* laux, float rmin, float rdelta, int nstep) {
    constexpr int n = 32;
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = qmul(sum_w, x[0]);
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w = qadd(sum_w, w);
        sum_x = qadd(sum_x, qmul(w, x[i]));
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) l[i] = 0;
        *the_min = qneg(min);
        return 0.0f;
    }
    float iscale = qdiv(static_cast<float>(nmax), qsub(max, min));
    float scale = qdiv(1.0f, iscale);
    float best_error = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int q = nearest_int(qmul(iscale, qsub(x[i], min)));
        l[i] = static_cast<uint8_t>(imax(0, imin(nmax, q)));
        float diff = qsub(qadd(qmul(scale, static_cast<float>(l[i])), min), x[i]);
        diff = qmul(diff, diff);
        best_error = qadd(best_error, qmul(weights[i], diff));
    }
    if (nstep < 1) {
        *the_min = qneg(min);
        return scale;
    }
    for (int step = 0; step <= nstep; ++step) {
        iscale = qdiv(qadd(qadd(rmin, qmul(rdelta, static_cast<float>(step))), static_cast<float>(nmax)), qsub(max, min));
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int q = nearest_int(qmul(iscale, qsub(x[i], min)));
            q = imax(0, imin(nmax, q));
            laux[i] = static_cast<uint8_t>(q);
            const float w = weights[i];
            const float fq = static_cast<float>(q);
            sum_l = qadd(sum_l, qmul(w, fq));
            sum_l2 = qadd(sum_l2, qmul(qmul(w, fq), fq));
            sum_xl = qadd(sum_xl, qmul(qmul(w, fq), x[i]));
        }
        const float det = qsub(qmul(sum_w, sum_l2), qmul(sum_l, sum_l));
        if (det > 0) {
            float this_scale = qdiv(qsub(qmul(sum_w, sum_xl), qmul(sum_x, sum_l)), det);
            float this_min = qdiv(qsub(qmul(sum_l2, sum_x), qmul(sum_l, sum_xl)), det);
            if (this_min > 0) {
                this_min = 0;
                this_scale = qdiv(sum_xl, sum_l2);
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; ++i) {
                float diff = qsub(qadd(qmul(this_scale, static_cast<float>(laux[i])), this_min), x[i]);
                diff = qmul(diff, diff);
                cur_error = qadd(cur_error, qmul(weights[i], diff));
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) l[i] = laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = qneg(min);
    return scale;
}

// Sub-block j's 6-bit scale and min from the 12-byte K-quant scale field.
SLOTH_GGML_HD void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = static_cast<uint8_t>(q[j] & 63);
        *m = static_cast<uint8_t>(q[j + 4] & 63);
    } else {
        *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// One Q4_K (nmax 15, 144 bytes) or Q5_K (nmax 31, 176 bytes) super-block (KQuants.Q45K).
SLOTH_GGML_HD void quantize_block_q45_k(const float* xb, uint8_t* yb, int nmax, float rmin, float rdelta, int nstep) {
    uint8_t l[kQkK];
    uint8_t laux[32];
    float weights[32];
    float mins[8];
    float scales[8];
    const int nbytes = nmax == 15 ? kBytesQ4_K : kBytesQ5_K;
    for (int i = 0; i < nbytes; ++i) yb[i] = 0;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        const float* xs = xb + 32 * j;
        float sum_x2 = 0.0f;
        for (int i = 0; i < 32; ++i) sum_x2 = qadd(sum_x2, qmul(xs[i], xs[i]));
        const float av_x = qsqrt(qdiv(sum_x2, 32.0f));
        for (int i = 0; i < 32; ++i) weights[i] = qadd(av_x, qabs(xs[i]));
        scales[j] = make_qkx2_quants(nmax, xs, weights, l + 32 * j, &mins[j], laux, rmin, rdelta, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? qdiv(63.0f, max_scale) : 0.0f;
    const float inv_min = max_min > 0 ? qdiv(63.0f, max_min) : 0.0f;
    uint8_t* sc = yb + 4;
    for (int j = 0; j < 8; ++j) {
        // (byte) of the int first (wraps like C#'s unchecked cast), then the minimum with 63.
        const uint8_t ls = static_cast<uint8_t>(imin(63, static_cast<uint8_t>(nearest_int(qmul(inv_scale, scales[j])))));
        const uint8_t lm = static_cast<uint8_t>(imin(63, static_cast<uint8_t>(nearest_int(qmul(inv_min, mins[j])))));
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] = static_cast<uint8_t>(sc[j - 4] | ((ls >> 4) << 6));
            sc[j] = static_cast<uint8_t>(sc[j] | ((lm >> 4) << 6));
        }
    }
    write_half(yb, qdiv(max_scale, 63.0f));
    write_half(yb + 2, qdiv(max_min, 63.0f));
    const float d_all = half_round_trip(qdiv(max_scale, 63.0f));
    const float m_all = half_round_trip(qdiv(max_min, 63.0f));
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        scale_min_k4(j, sc, &s, &m);
        const float d = qmul(d_all, static_cast<float>(s));
        if (d == 0) continue;  // the search's own levels stay
        const float dm = qmul(m_all, static_cast<float>(m));
        for (int i = 0; i < 32; ++i) {
            const int q = nearest_int(qdiv(qadd(xb[32 * j + i], dm), d));
            l[32 * j + i] = static_cast<uint8_t>(imax(0, imin(nmax, q)));
        }
    }
    if (nmax == 15) {
        uint8_t* qs = yb + 16;
        for (int j = 0, o = 0; j < kQkK; j += 64, o += 32)
            for (int i = 0; i < 32; ++i) qs[o + i] = static_cast<uint8_t>(l[j + i] | (l[j + i + 32] << 4));
    } else {
        uint8_t* qh = yb + 16;
        uint8_t* ql = yb + 48;
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0, o = 0; n < kQkK; n += 64, o += 32) {
            for (int j = 0; j < 32; ++j) {
                int l1 = l[n + j], l2 = l[n + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] = static_cast<uint8_t>(qh[j] | m1);
                }
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] = static_cast<uint8_t>(qh[j] | m2);
                }
                ql[o + j] = static_cast<uint8_t>(l1 | (l2 << 4));
            }
            m1 = static_cast<uint8_t>(m1 << 2);
            m2 = static_cast<uint8_t>(m2 << 2);
        }
    }
}

SLOTH_GGML_HD void quantize_block_q4_k(const float* x, uint8_t* y) { quantize_block_q45_k(x, y, 15, -1.0f, 0.1f, 20); }
SLOTH_GGML_HD void quantize_block_q5_k(const float* x, uint8_t* y) { quantize_block_q45_k(x, y, 31, -0.5f, 0.1f, 15); }

// ---- Q6_K --------------------------------------------------------------------------------------------------------

constexpr float kGroupMaxEps = 1e-15f;

// Symmetric fit x ~ scale * (L - 32) over n = 16 values, weights x^2 (KQuants.MakeQxQuants with nmax 32).
SLOTH_GGML_HD float make_qx_quants_16(const float* x, int8_t* l) {
    constexpr int n = 16;
    constexpr int nmax = 32;
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = qabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) l[i] = 0;
        return 0.0f;
    }
    float iscale = qdiv(static_cast<float>(-nmax), max);
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int q = nearest_int(qmul(iscale, x[i]));
        q = imax(-nmax, imin(nmax - 1, q));
        l[i] = static_cast<int8_t>(q + nmax);
        const float w = qmul(x[i], x[i]);
        const float fq = static_cast<float>(q);
        sumlx = qadd(sumlx, qmul(qmul(w, x[i]), fq));
        suml2 = qadd(suml2, qmul(qmul(w, fq), fq));
    }
    float scale = suml2 != 0 ? qdiv(sumlx, suml2) : 0.0f;
    float best = qmul(scale, sumlx);
    for (int step = -9; step <= 9; ++step) {
        if (step == 0) continue;
        iscale = qdiv(qneg(qadd(static_cast<float>(nmax), qmul(0.1f, static_cast<float>(step)))), max);
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int q = nearest_int(qmul(iscale, x[i]));
            q = imax(-nmax, imin(nmax - 1, q));
            const float w = qmul(x[i], x[i]);
            const float fq = static_cast<float>(q);
            sumlx = qadd(sumlx, qmul(qmul(w, x[i]), fq));
            suml2 = qadd(suml2, qmul(qmul(w, fq), fq));
        }
        if (suml2 > 0 && qmul(sumlx, sumlx) > qmul(best, suml2)) {
            for (int i = 0; i < n; ++i) {
                const int q = nearest_int(qmul(iscale, x[i]));
                l[i] = static_cast<int8_t>(nmax + imax(-nmax, imin(nmax - 1, q)));
            }
            scale = qdiv(sumlx, suml2);
            best = qmul(scale, sumlx);
        }
    }
    return scale;
}

// One Q6_K super-block, 210 bytes (KQuants.Q6_KScalar).
SLOTH_GGML_HD void quantize_block_q6_k(const float* xb, uint8_t* yb) {
    int8_t l[kQkK];
    float scales[16];
    for (int i = 0; i < kBytesQ6_K; ++i) yb[i] = 0;
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float s = make_qx_quants_16(xb + 16 * ib, l + 16 * ib);
        scales[ib] = s;
        const float a = qabs(s);
        if (a > max_abs_scale) {
            max_abs_scale = a;
            max_scale = s;
        }
    }
    if (max_abs_scale < kGroupMaxEps) return;  // all-zero block: every byte 0 (d = +0)
    const float iscale = qdiv(-128.0f, max_scale);
    write_half(yb + 208, qdiv(1.0f, iscale));
    uint8_t* sc_out = yb + 192;
    // (sbyte) of an int wraps like C#'s unchecked cast (the value is in [-128, 127] anyway).
    for (int ib = 0; ib < 16; ++ib)
        sc_out[ib] = static_cast<uint8_t>(static_cast<int8_t>(imin(127, nearest_int(qmul(iscale, scales[ib])))));
    const float d_all = half_round_trip(qdiv(1.0f, iscale));
    for (int j = 0; j < 16; ++j) {
        const float d = qmul(d_all, static_cast<float>(static_cast<int8_t>(sc_out[j])));
        if (d == 0) continue;
        for (int i = 0; i < 16; ++i) {
            const int q = nearest_int(qdiv(xb[16 * j + i], d));
            l[16 * j + i] = static_cast<int8_t>(imax(-32, imin(31, q)) + 32);
        }
    }
    uint8_t* ql = yb;
    uint8_t* qh = yb + 128;
    for (int j = 0, ol = 0, oh = 0; j < kQkK; j += 128, ol += 64, oh += 32) {
        for (int i = 0; i < 32; ++i) {
            const int q1 = l[j + i] & 0xF;
            const int q2 = l[j + i + 32] & 0xF;
            const int q3 = l[j + i + 64] & 0xF;
            const int q4 = l[j + i + 96] & 0xF;
            ql[ol + i] = static_cast<uint8_t>(q1 | (q3 << 4));
            ql[ol + i + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
            qh[oh + i] = static_cast<uint8_t>((l[j + i] >> 4) | ((l[j + i + 32] >> 4) << 2) | ((l[j + i + 64] >> 4) << 4) |
                                              ((l[j + i + 96] >> 4) << 6));
        }
    }
}

// One block of `type` (validated by the caller): x holds block_elements(type) floats, y gets block_bytes(type).
SLOTH_GGML_HD void quantize_block(int32_t type, const float* x, uint8_t* y) {
    switch (type) {
        case kTypeQ8_0: quantize_block_q8_0(x, y); break;
        case kTypeQ4_K: quantize_block_q4_k(x, y); break;
        case kTypeQ5_K: quantize_block_q5_k(x, y); break;
        default: quantize_block_q6_k(x, y); break;
    }
}

}  // namespace sloth::ggml
