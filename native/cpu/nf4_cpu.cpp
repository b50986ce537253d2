// NF4 double-quantized dequantization and quantization on the host, bit-identical to bitsandbytes.
// This file is built with -ffp-contract=off: bitsandbytes multiplies and then adds in separate float operations.
#include "../src/backends.h"
#include "../src/nf4_codes.h"
#include "../src/validate.h"
#include "float_convert.h"
#include "parallel.h"

#include <cmath>
#include <vector>

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

sloth_status nf4_gemv(const char* fn, const Nf4GemvArgs& a) { return nf4_gemv_rows(fn, a, 0, a.m); }

sloth_status nf4_gemv_rows(const char* fn, const Nf4GemvArgs& a, int64_t row0, int64_t y_stride) {
    const int64_t bs = a.blocksize;
    const int64_t nested_span = bs * a.nested_blocksize;
    const float offset = *a.nested_offset;
    const sloth_dtype dt = a.dtype;
    // One weight row at a time: dequantized into a float row (the values sloth_nf4_dequantize writes in dtype), then
    // a dot product with each activation row, summed in double and rounded once.
    SLOTH_CHECK(parallel_ranges(fn, a.m, a.k * a.batch, [&](int64_t r0, int64_t r1) {
        std::vector<float> w(static_cast<size_t>(a.k));
        for (int64_t r = r0; r < r1; ++r) {
            for (int64_t c = 0; c < a.k; ++c) {
                const int64_t i = (row0 + r) * a.k + c;
                const float scale = a.nested_code_map[a.absmax_codes[i / bs]] * a.nested_absmax[i / nested_span] + offset;
                const uint8_t byte = a.packed[i >> 1];
                const int nibble = (i & 1) ? (byte & 0x0F) : (byte >> 4);
                w[static_cast<size_t>(c)] = round_to(dt, a.nf4_code_table[nibble] * scale);
            }
            for (int64_t b = 0; b < a.batch; ++b) {
                double acc = 0.0;
                for (int64_t c = 0; c < a.k; ++c)
                    acc += static_cast<double>(load_as_f32(a.x, dt, b * a.k + c)) * static_cast<double>(w[static_cast<size_t>(c)]);
                store_from_f32(a.y, dt, b * y_stride + r, static_cast<float>(acc));
            }
        }
    }));
    return SLOTH_OK;
}

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
                const uint8_t hi = nf4_code(load_as_f32(a.src, dt, i) * inv);
                // bitsandbytes pads a missing last element with 0 before quantizing it.
                const float x_lo = (i + 1 < end) ? load_as_f32(a.src, dt, i + 1) : 0.0f;
                const uint8_t lo = nf4_code(x_lo * inv);
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
            a.absmax_codes[b] = dynamic_code(a.nested_code_map, (absmax[b] - offset) * inv);
    }
    return SLOTH_OK;
}

}  // namespace sloth::cpu
