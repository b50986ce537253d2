// NF4 double-quantized dequantization and quantization on the host, bit-identical to bitsandbytes.
// This file is built with -ffp-contract=off: bitsandbytes multiplies and then adds in separate float operations.
#include "../src/backends.h"
#include "../src/validate.h"
#include "float_convert.h"
#include "parallel.h"

#include <cmath>

namespace sloth::cpu {

sloth_status nf4_dequantize(const char* fn, const Nf4DequantArgs& a) {
    const int64_t n = a.n;
    const int64_t bs = a.blocksize;
    const int64_t nested_span = bs * a.nested_blocksize;  // elements covered by one nested absmax
    const float offset = *a.nested_offset;
    const int64_t blocks = ceil_div(n, bs);
    SLOTH_CHECK(parallel_ranges(fn, blocks, bs, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t start = b * bs;
            const float scaled = a.nested_code_map[a.absmax_codes[b]] * a.nested_absmax[start / nested_span];
            const float scale = scaled + offset;
            const int64_t end = std::min(n, start + bs);
            for (int64_t i = start; i < end; ++i) {
                const uint8_t byte = a.packed[i >> 1];
                const int nibble = (i & 1) ? (byte & 0x0F) : (byte >> 4);
                store_from_f32(a.out, a.out_dtype, i, a.nf4_code_table[nibble] * scale);
            }
        }
    }));
    return SLOTH_OK;
}

namespace {

// bitsandbytes' NF4 decision tree: thresholds are the midpoints between neighbouring NF4 codes.
uint8_t quantize_nf4_value(float x) {
    if (x > 0.03979014977812767f) {
        if (x > 0.3893125355243683f) {
            if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 0b1111 : 0b1110;
            return x > 0.5016634166240692f ? 0b1101 : 0b1100;
        }
        if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 0b1011 : 0b1010;
        return x > 0.1202552504837513f ? 0b1001 : 0b1000;
    }
    if (x > -0.33967943489551544f) {
        if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 0b0111 : 0b0110;
        return x > -0.23460740596055984f ? 0b0101 : 0b0100;
    }
    if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 0b0011 : 0b0010;
    return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

// bitsandbytes' 8-bit code search (dQuantize, non-stochastic): a 7-step binary search over the sorted
// 256-entry map, then rounding to the nearer neighbour by comparing against the float midpoint.
uint8_t quantize_dynamic_value(const float* code, float x) {
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f;
    float val = code[pivot];
    for (int step = 64; step > 0; step >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += step;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= step;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[upper_pivot];
    if (lower_pivot == 0) lower = code[lower_pivot];
    if (x > val) {
        const float midpoint = (upper + val) * 0.5f;
        return static_cast<uint8_t>(x > midpoint ? upper_pivot : pivot);
    }
    const float midpoint = (lower + val) * 0.5f;
    return static_cast<uint8_t>(x < midpoint ? lower_pivot : pivot);
}

}  // namespace

sloth_status nf4_quantize(const char* fn, const Nf4QuantArgs& a) {
    const int64_t n = a.n;
    const int64_t bs = a.blocksize;
    const int64_t blocks = ceil_div(n, bs);
    const sloth_dtype dt = a.src_dtype;
    float* absmax = a.absmax;
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(load_as_f32(a.src, dt, i)))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: src[%lld] is not finite; NF4 cannot represent it", fn,
                        static_cast<long long>(i));
    }
    // Pass 1: per-block absmax and the packed codes (x times the float reciprocal, as bitsandbytes does).
    SLOTH_CHECK(parallel_ranges(fn, blocks, bs, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t start = b * bs, end = std::min(n, start + bs);
            float m = 0.0f;
            for (int64_t i = start; i < end; ++i) m = std::fmax(m, std::fabs(load_as_f32(a.src, dt, i)));
            absmax[b] = m;
            const float inv = 1.0f / m;
            for (int64_t i = start; i < end; i += 2) {
                const uint8_t hi = quantize_nf4_value(load_as_f32(a.src, dt, i) * inv);
                // bitsandbytes pads a missing last element with 0 before quantizing it.
                const float x_lo = (i + 1 < end) ? load_as_f32(a.src, dt, i + 1) : 0.0f;
                const uint8_t lo = quantize_nf4_value(x_lo * inv);
                a.packed[i >> 1] = static_cast<uint8_t>((hi << 4) | lo);
            }
        }
    }));
    // Pass 2: the offset is the mean, summed in double in the order the header fixes (the GPU's one-block
    // reduction uses the same order, so both give the same bits) and rounded once. PyTorch's float reduction may
    // differ from it by an ulp: see the tie analysis in the golden tests.
    double lane_sums[kNf4MeanLanes];
    for (int64_t t = 0; t < kNf4MeanLanes; ++t) {
        double s = 0.0;
        for (int64_t b = t; b < blocks; b += kNf4MeanLanes) s += absmax[b];
        lane_sums[t] = s;
    }
    double sum = 0.0;
    for (int64_t t = 0; t < kNf4MeanLanes; ++t) sum += lane_sums[t];
    const float offset = static_cast<float>(sum / static_cast<double>(blocks));
    *a.nested_offset = offset;
    const int64_t nbs = a.nested_blocksize;
    const int64_t nested_blocks = ceil_div(blocks, nbs);
    for (int64_t c = 0; c < nested_blocks; ++c) {
        const int64_t start = c * nbs, end = std::min(blocks, start + nbs);
        float m = 0.0f;
        for (int64_t b = start; b < end; ++b) m = std::fmax(m, std::fabs(absmax[b] - offset));
        a.nested_absmax[c] = m;
        const float inv = 1.0f / m;
        for (int64_t b = start; b < end; ++b)
            a.absmax_codes[b] = quantize_dynamic_value(a.nested_code_map, (absmax[b] - offset) * inv);
    }
    return SLOTH_OK;
}

}  // namespace sloth::cpu
