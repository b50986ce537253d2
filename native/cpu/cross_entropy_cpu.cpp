// Cross-entropy over a logits chunk with the gradient written in place, on the host. Mirrors the CUDA kernel's
// arithmetic: float32 per element, double for the row sums.
#include "../src/backends.h"
#include "../src/status.h"
#include "float_convert.h"
#include "parallel.h"

#include <cmath>
#include <limits>
#include <vector>

namespace sloth::cpu {

sloth_status cross_entropy_chunk(const char* fn, const CrossEntropyArgs& a) {
    for (int64_t r = 0; r < a.rows; ++r) {
        const int64_t y = a.labels[r];
        if (y != a.ignore_index && (y < 0 || y >= a.vocab))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: labels[%lld] = %lld is outside [0, %lld) and is not ignore_index = %lld",
                        fn, static_cast<long long>(r), static_cast<long long>(y), static_cast<long long>(a.vocab),
                        static_cast<long long>(a.ignore_index));
    }
    const sloth_dtype dt = a.dtype;
    const float inv_cap = a.softcap > 0.0f ? 1.0f / a.softcap : 0.0f;
    SLOTH_CHECK(parallel_ranges(fn, a.rows, a.vocab, [&](int64_t r0, int64_t r1) {
        std::vector<float> z(static_cast<size_t>(a.vocab));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t base = r * a.row_stride;
            const int64_t y = a.labels[r];
            if (y == a.ignore_index) {
                a.loss_out[r] = 0.0f;
                a.lse_out[r] = 0.0f;
                if (a.compute_grad)
                    for (int64_t j = 0; j < a.vocab; ++j) store_from_f32(a.logits, dt, base + j, 0.0f);
                continue;
            }
            float zmax = -std::numeric_limits<float>::infinity();
            double zsum = 0.0;
            for (int64_t j = 0; j < a.vocab; ++j) {
                float v = load_as_f32(a.logits, dt, base + j) * a.logit_scale;
                if (a.softcap > 0.0f) v = a.softcap * std::tanh(v * inv_cap);
                z[j] = v;
                zmax = std::fmax(zmax, v);
                zsum += v;
            }
            double sexp = 0.0;
            for (int64_t j = 0; j < a.vocab; ++j) sexp += std::exp(static_cast<double>(z[j] - zmax));
            const double lse = zmax + std::log(sexp);
            const double eps = a.label_smoothing;
            const double loss = (1.0 - eps) * (lse - z[y]) + eps * (lse - zsum / a.vocab) + a.z_loss * lse * lse;
            a.loss_out[r] = static_cast<float>(loss);
            a.lse_out[r] = static_cast<float>(lse);
            if (!a.compute_grad) continue;
            const float g = a.row_grad_scale ? a.row_grad_scale[r] : a.grad_scale;
            const float p_coef = static_cast<float>(1.0 + 2.0 * a.z_loss * lse);
            const float smooth = static_cast<float>(eps / a.vocab);
            const float lse_f = static_cast<float>(lse);
            for (int64_t j = 0; j < a.vocab; ++j) {
                const float p = std::exp(z[j] - lse_f);
                float dz = p * p_coef - smooth;
                if (j == y) dz -= static_cast<float>(1.0 - eps);
                float dx = dz * a.logit_scale;
                if (a.softcap > 0.0f) {
                    const float t = z[j] * inv_cap;
                    dx *= 1.0f - t * t;
                }
                store_from_f32(a.logits, dt, base + j, dx * g);
            }
        }
    }));
    return SLOTH_OK;
}

}  // namespace sloth::cpu
