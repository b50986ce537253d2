// RMSNorm forward and backward on the host: the reference the CUDA kernels are tested against. Row sums in double
// (then rounded once to float32), element-wise work in float32 with the roundings of LlamaRMSNorm in the input dtype,
// or GemmaRMSNorm's (1 + w) form entirely in float32 with one rounding at the end (unit_offset).
#include "../src/backends.h"
#include "../src/status.h"
#include "float_convert.h"
#include "parallel.h"

#include <cmath>
#include <vector>

namespace sloth::cpu {

sloth_status rms_norm_forward(const char* fn, const RmsNormArgs& a) {
    const sloth_dtype dt = a.dtype;
    SLOTH_CHECK(parallel_ranges(fn, a.rows, a.cols, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t base = r * a.cols;
            double ss = 0.0;
            for (int64_t j = 0; j < a.cols; ++j) {
                const double v = load_as_f32(a.x, dt, base + j);
                ss += v * v;
            }
            const float var = static_cast<float>(ss / static_cast<double>(a.cols));
            const float rstd = 1.0f / std::sqrt(var + a.eps);
            if (a.rstd) a.rstd[r] = rstd;
            for (int64_t j = 0; j < a.cols; ++j) {  // y may alias x: element j is read before it is written
                const float xhat = load_as_f32(a.x, dt, base + j) * rstd;
                if (a.unit_offset) {
                    store_from_f32(a.y, dt, base + j, xhat * (1.0f + load_as_f32(a.weight, dt, j)));
                } else {
                    store_from_f32(a.y, dt, base + j, load_as_f32(a.weight, dt, j) * round_to(dt, xhat));
                }
            }
        }
    }));
    return SLOTH_OK;
}

sloth_status rms_norm_backward(const char* fn, const RmsNormArgs& a) {
    const sloth_dtype dt = a.dtype;
    // dW first: grad_x may alias grad_out, which dW still needs.
    if (a.grad_weight) {
        SLOTH_CHECK(parallel_ranges(fn, a.cols, a.rows, [&](int64_t j0, int64_t j1) {
            for (int64_t j = j0; j < j1; ++j) {
                float acc = 0.0f;
                for (int64_t r = 0; r < a.rows; ++r) {
                    const float xhat = load_as_f32(a.x, dt, r * a.cols + j) * a.rstd[r];
                    const float h = a.unit_offset ? xhat : round_to(dt, xhat);
                    acc += load_as_f32(a.grad_out, dt, r * a.cols + j) * h;
                }
                a.grad_weight[j] = acc;
            }
        }));
    }
    SLOTH_CHECK(parallel_ranges(fn, a.rows, a.cols, [&](int64_t r0, int64_t r1) {
        std::vector<float> g(static_cast<size_t>(a.cols));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t base = r * a.cols;
            const float rstd = a.rstd[r];
            double dot = 0.0;
            for (int64_t j = 0; j < a.cols; ++j) {
                const float dy = load_as_f32(a.grad_out, dt, base + j), w = load_as_f32(a.weight, dt, j);
                g[j] = a.unit_offset ? dy * (1.0f + w) : round_to(dt, dy * w);
                dot += static_cast<double>(g[j]) * static_cast<double>(load_as_f32(a.x, dt, base + j) * rstd);
            }
            const float mean = static_cast<float>(dot / static_cast<double>(a.cols));
            for (int64_t j = 0; j < a.cols; ++j) {
                const float xhat = load_as_f32(a.x, dt, base + j) * rstd;
                store_from_f32(a.y, dt, base + j, rstd * (g[j] - xhat * mean));
            }
        }
    }));
    return SLOTH_OK;
}

}  // namespace sloth::cpu
