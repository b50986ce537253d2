// CPU twin of cuda/decode_attention_kernels.cuh: one new query per sequence over the KV cache, the whole key range at once
// (no split: the split-and-combine of the GPU is an exact rewrite of the same softmax up to float32 rounding). It uses
// neither a.partial nor a.arrivals (the GPU's scratch), which it leaves as they are: zero counters stay zero.
#include "../src/decode_kernels.h"
#include "../src/status.h"
#include "float_convert.h"
#include "parallel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace sloth::cpu {

sloth_status decode_attention(const char* fn, const DecodeAttentionArgs& a) {
    const sloth_dtype dt = a.dtype;
    const int64_t hd = a.head_dim, group = a.heads / a.kv_heads, len = *a.length;
    return parallel_ranges(fn, a.batch * a.heads, (len + 1) * hd * 2, [&](int64_t i0, int64_t i1) {
        std::vector<float> s(static_cast<size_t>(len + 1));
        std::vector<double> acc(static_cast<size_t>(hd));
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / a.heads, h = i % a.heads, kvh = h / group;
            const int64_t qbase = (b * a.heads + h) * hd;
            float mx = -std::numeric_limits<float>::infinity();
            for (int64_t j = 0; j <= len; ++j) {
                const bool visible = a.valid[b * a.max_length + j] != 0 && (a.window <= 0 || j > len - a.window);
                if (!visible) {
                    s[static_cast<size_t>(j)] = -std::numeric_limits<float>::infinity();
                    continue;
                }
                const int64_t kbase = ((b * a.kv_heads + kvh) * a.max_length + j) * hd;
                double dot = 0.0;
                for (int64_t d = 0; d < hd; ++d)
                    dot += static_cast<double>(load_as_f32(a.q, dt, qbase + d)) * load_as_f32(a.k_cache, dt, kbase + d);
                float sc = static_cast<float>(dot) * a.scale;
                if (a.softcap > 0.0f) sc = a.softcap * std::tanh(sc / a.softcap);
                s[static_cast<size_t>(j)] = sc;
                mx = std::fmax(mx, sc);
            }
            std::fill(acc.begin(), acc.end(), 0.0);
            double sum = 0.0;
            if (mx != -std::numeric_limits<float>::infinity()) {
                for (int64_t j = 0; j <= len; ++j) {
                    if (s[static_cast<size_t>(j)] == -std::numeric_limits<float>::infinity()) continue;
                    const double p = std::exp(static_cast<double>(s[static_cast<size_t>(j)]) - mx);
                    sum += p;
                    const int64_t vbase = ((b * a.kv_heads + kvh) * a.max_length + j) * hd;
                    for (int64_t d = 0; d < hd; ++d) acc[static_cast<size_t>(d)] += p * load_as_f32(a.v_cache, dt, vbase + d);
                }
            }
            for (int64_t d = 0; d < hd; ++d)
                store_from_f32(a.out, dt, qbase + d, sum > 0.0 ? static_cast<float>(acc[static_cast<size_t>(d)] / sum) : 0.0f);
        }
    });
}

}  // namespace sloth::cpu
