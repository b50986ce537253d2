// Soft-capped attention in one pass on the host, the CPU twin of cuda/softcap_flash.cu and the oracle its tests use:
// the same float32 math (slothsharp.h) written plainly, one query row (or, for dK/dV, one key) at a time, the scores
// made again wherever they are needed instead of kept. It rounds where the CUDA kernels round for their tensor-core
// products (the unnormalised probabilities before the product with v, round(p) for dV, g for dK and dQ) so that the
// two agree to the dtype's rounding; its sums run in a plain sequential order (the kernels' differ), and the softmax
// uses the row's maximum where the CUDA kernel rescales by a running one. Rows (keys) are split over the cores.
// Built with -ffp-contract=off: every product and sum rounds separately.
#include "../src/backends.h"
#include "../src/status.h"
#include "float_convert.h"
#include "parallel.h"

#include <cmath>
#include <limits>
#include <vector>

namespace sloth::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Flash {
    const SoftcapFlashArgs& a;
    float c;  // float32(scale / cap)

    float load(const void* p, int64_t i) const { return load_as_f32(p, a.dtype, i); }
    int64_t qrow(int64_t bh, int64_t i) const { return (bh * a.rows + i) * a.head_dim; }
    int64_t krow(int64_t bh, int64_t j) const { return (bh * a.keys + j) * a.head_dim; }

    // sum_d x[xbase + d] * y[ybase + d] in float32, in order.
    float dot(const void* x, int64_t xbase, const void* y, int64_t ybase) const {
        float s = 0.0f;
        for (int64_t d = 0; d < a.head_dim; ++d) s += load(x, xbase + d) * load(y, ybase + d);
        return s;
    }

    bool allowed(int64_t bh, int64_t i, int64_t j) const {
        const uint8_t* m = a.mask_row(bh, i);
        return !m || m[j] != 0;
    }

    // t = tanh(s c) of query row i and key j.
    float tanh_of(int64_t bh, int64_t i, int64_t j) const {
        return std::tanh(dot(a.q, qrow(bh, i), a.k, krow(bh, j)) * c);
    }

    // The backward's values of (i, j): t, p = exp(cap t - lse) (0 where masked) and g, the score's gradient rounded.
    void gradient(int64_t bh, int64_t i, int64_t j, float& p, float& g) const {
        if (!allowed(bh, i, j)) {
            p = 0.0f, g = 0.0f;
            return;
        }
        const float t = tanh_of(bh, i, j);
        const int64_t r = bh * a.rows + i;
        p = std::exp(a.cap * t - a.lse[r]);
        const float dp = dot(a.grad_out, qrow(bh, i), a.v, krow(bh, j));
        g = round_to(a.dtype, p * (dp - a.delta[r]) * (1.0f - t * t) * a.scale);
    }
};

}  // namespace

sloth_status softcap_flash_forward(const char* fn, const SoftcapFlashArgs& a) {
    const Flash f{a, a.scale / a.cap};
    const int64_t d = a.head_dim;
    return parallel_ranges(fn, a.batch * a.heads * a.rows, a.keys * d * 4, [&](int64_t r0, int64_t r1) {
        std::vector<float> z(static_cast<size_t>(a.keys));
        std::vector<float> acc(static_cast<size_t>(d));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t bh = r / a.rows, i = r % a.rows;
            float m = kNegInf;
            for (int64_t j = 0; j < a.keys; ++j) {
                z[j] = f.allowed(bh, i, j) ? a.cap * f.tanh_of(bh, i, j) : kNegInf;
                if (z[j] > m) m = z[j];
            }
            std::fill(acc.begin(), acc.end(), 0.0f);
            double l = 0.0;
            if (m != kNegInf) {
                for (int64_t j = 0; j < a.keys; ++j) {
                    if (z[j] == kNegInf) continue;
                    const float e = std::exp(z[j] - m);
                    l += e;
                    const float p = round_to(a.dtype, e);  // what the tensor-core product with v takes
                    for (int64_t c = 0; c < d; ++c) acc[c] += p * f.load(a.v, f.krow(bh, j) + c);
                }
            }
            // A row without an allowed key: l = 0, out = NaN, lse = -inf (the eager softmax of -inf is NaN).
            const float lf = static_cast<float>(l);
            for (int64_t c = 0; c < d; ++c)
                store_from_f32(a.out, a.dtype, r * d + c, lf > 0.0f ? acc[c] / lf : std::numeric_limits<float>::quiet_NaN());
            a.lse[r] = lf > 0.0f ? m + std::log(lf) : kNegInf;
        }
    });
}

sloth_status softcap_flash_backward(const char* fn, const SoftcapFlashArgs& a) {
    const Flash f{a, a.scale / a.cap};
    const int64_t d = a.head_dim, bhs = a.batch * a.heads;
    const float kNaN = std::numeric_limits<float>::quiet_NaN();
    // delta_i = sum_d grad_out * out.
    SLOTH_CHECK(parallel_ranges(fn, bhs * a.rows, d, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) a.delta[r] = f.dot(a.grad_out, r * d, a.out, r * d);
    }));
    // grad_q, row by row (0 for a row without an allowed key: every p and g of it is 0).
    SLOTH_CHECK(parallel_ranges(fn, bhs * a.rows, a.keys * d * 8, [&](int64_t r0, int64_t r1) {
        std::vector<float> acc(static_cast<size_t>(d));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t bh = r / a.rows, i = r % a.rows;
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int64_t j = 0; j < a.keys; ++j) {
                float p, g;
                f.gradient(bh, i, j, p, g);
                if (g != 0.0f)
                    for (int64_t c = 0; c < d; ++c) acc[c] += g * f.load(a.k, f.krow(bh, j) + c);
            }
            for (int64_t c = 0; c < d; ++c) store_from_f32(a.grad_q, a.dtype, r * d + c, acc[c]);
        }
    }));
    // grad_k and grad_v, key by key; grad_v all NaN in a (batch, head) with a row without an allowed key (as on the
    // eager path, where that row's NaN probabilities reach every key; its score gradients are 0, so grad_k is unhurt).
    std::vector<uint8_t> empty_head(static_cast<size_t>(bhs), 0);
    for (int64_t r = 0; r < bhs * a.rows; ++r)
        if (a.lse[r] == kNegInf) empty_head[static_cast<size_t>(r / a.rows)] = 1;
    return parallel_ranges(fn, bhs * a.keys, a.rows * d * 8, [&](int64_t r0, int64_t r1) {
        std::vector<float> dk(static_cast<size_t>(d)), dv(static_cast<size_t>(d));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t bh = r / a.keys, j = r % a.keys;
            std::fill(dk.begin(), dk.end(), 0.0f);
            std::fill(dv.begin(), dv.end(), 0.0f);
            const bool poisoned = empty_head[static_cast<size_t>(bh)] != 0;
            for (int64_t i = 0; i < a.rows; ++i) {
                float p, g;
                f.gradient(bh, i, j, p, g);
                if (p == 0.0f && g == 0.0f) continue;
                const float pr = round_to(a.dtype, p);
                for (int64_t c = 0; c < d; ++c) {
                    dv[c] += pr * f.load(a.grad_out, f.qrow(bh, i) + c);
                    dk[c] += g * f.load(a.q, f.qrow(bh, i) + c);
                }
            }
            for (int64_t c = 0; c < d; ++c) {
                store_from_f32(a.grad_k, a.dtype, r * d + c, dk[c]);
                store_from_f32(a.grad_v, a.dtype, r * d + c, poisoned ? kNaN : dv[c]);
            }
        }
    });
}

}  // namespace sloth::cpu
