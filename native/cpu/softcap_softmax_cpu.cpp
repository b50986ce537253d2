// Soft-capped attention probabilities on the host, the CPU twin of cuda/softcap_softmax.cu: per row, the soft-capped
// scores with the dtype roundings of the eager PyTorch expression (see slothsharp.h), then a float32 softmax, and in
// backward the softmax's and the soft-cap's gradient with autograd's roundings. Rows are split over the cores; each
// range keeps one row's values (two float buffers) so tanh and exp run once per element. The row sums accumulate in
// double and round to float32 once: a float32 result within rounding of PyTorch's vectorized (tree-like) float32 sums,
// where a sequential float32 sum drifts by ~1e-6 over 16,384 columns. "/ cap" is a true division,
// as PyTorch's CPU kernel divides by a scalar. Built with -ffp-contract=off: every product and sum rounds separately.
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

// round(tanh(round(round(s0 * scale) / cap))): the soft-cap's tanh as the eager expression stores it in the dtype.
float capped_tanh(sloth_dtype dt, float s0, float scale, float cap) {
    const float s1 = round_to(dt, s0 * scale);
    const float s2 = round_to(dt, s1 / cap);
    return round_to(dt, std::tanh(s2));
}

// One row's tanh values t[j] and exponentials e[j] = exp(s3_j - max) (0 where masked); returns their float32 sum.
float row_exponentials(const SoftcapSoftmaxArgs& a, int64_t r, float* t, float* e) {
    const sloth_dtype dt = a.dtype;
    const uint8_t* mask = a.mask_row(r);
    const int64_t base = r * a.cols;
    float m = kNegInf;
    for (int64_t j = 0; j < a.cols; ++j) {
        t[j] = capped_tanh(dt, load_as_f32(a.scores, dt, base + j), a.scale, a.cap);
        e[j] = (mask && mask[j] == 0) ? kNegInf : round_to(dt, t[j] * a.cap);  // s3, then its exponential below
        if (e[j] > m) m = e[j];
    }
    // A row without an allowed key keeps m = -inf: -inf - -inf is NaN, so the row becomes NaN, as in PyTorch.
    double sum = 0.0;
    for (int64_t j = 0; j < a.cols; ++j) {
        e[j] = std::exp(e[j] - m);
        sum += e[j];
    }
    return static_cast<float>(sum);
}

// Runs row_body(r, t, e, sum) for every row, with one pair of row buffers per range.
template <class RowBody>
sloth_status for_each_row(const char* fn, const SoftcapSoftmaxArgs& a, RowBody row_body) {
    return parallel_ranges(fn, a.total_rows(), a.cols * 8, [&](int64_t r0, int64_t r1) {
        std::vector<float> buffers(static_cast<size_t>(2 * a.cols));
        float* t = buffers.data();
        float* e = t + a.cols;
        for (int64_t r = r0; r < r1; ++r) row_body(r, t, e, row_exponentials(a, r, t, e));
    });
}

}  // namespace

sloth_status softcap_softmax_forward(const char* fn, const SoftcapSoftmaxArgs& a) {
    return for_each_row(fn, a, [&](int64_t r, const float*, const float* e, float sum) {
        const int64_t base = r * a.cols;
        for (int64_t j = 0; j < a.cols; ++j) store_from_f32(a.probs, a.dtype, base + j, e[j] / sum);
    });
}

sloth_status softcap_softmax_backward(const char* fn, const SoftcapSoftmaxArgs& a) {
    const sloth_dtype dt = a.dtype;
    return for_each_row(fn, a, [&](int64_t r, const float* t, float* e, float sum) {
        const int64_t base = r * a.cols;
        double acc = 0.0;  // sum(dp * p32), each product rounded to float32 first (PyTorch's dp * p32, then sum)
        for (int64_t j = 0; j < a.cols; ++j) {
            e[j] = e[j] / sum;  // p32
            const float prod = load_as_f32(a.grad_probs, dt, base + j) * e[j];
            acc += prod;
        }
        const float dot = static_cast<float>(acc);
        for (int64_t j = 0; j < a.cols; ++j) {
            const float p = e[j];
            const float ds = round_to(dt, p * (load_as_f32(a.grad_probs, dt, base + j) - dot));
            const float scaled = round_to(dt, ds * a.cap);
            const float one_minus = round_to(dt, 1.0f - round_to(dt, t[j] * t[j]));
            const float chain = round_to(dt, round_to(dt, scaled * one_minus) / a.cap);
            store_from_f32(a.probs, dt, base + j, p);
            store_from_f32(a.grad_scores, dt, base + j, chain * a.scale);
        }
    });
}

}  // namespace sloth::cpu
