// CPU twins of the decoding engine's element-wise and row-wise kernels (cuda/decode_ops.cu, cuda/decode_gemv.cu):
// the reference the CUDA kernels are held to. Float32 arithmetic with the roundings to dtype of the PyTorch
// expressions they replace (Hugging Face's decoder layers), row sums in double.
#include "../src/decode_kernels.h"
#include "../src/status.h"
#include "float_convert.h"
#include "gate_activation.h"
#include "parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace sloth::cpu {

namespace {

// 1 / sqrt(mean(x^2) + eps) of n values, the sum in double rounded once (as cpu::rms_norm_forward).
float rstd_of(const float* x, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(x[j]) * static_cast<double>(x[j]);
    const float var = static_cast<float>(ss / static_cast<double>(n));
    return 1.0f / std::sqrt(var + eps);
}

// RMSNorm of x (float values already in dtype) with weight w, each output rounded to dtype (returned as float).
void norm_row(const float* x, int64_t n, const void* w, sloth_dtype dt, float eps, bool unit_offset, float* out) {
    const float rstd = rstd_of(x, n, eps);
    for (int64_t j = 0; j < n; ++j) {
        const float xhat = x[j] * rstd;
        out[j] = unit_offset ? round_to(dt, xhat * (1.0f + load_as_f32(w, dt, j)))
                             : round_to(dt, load_as_f32(w, dt, j) * round_to(dt, xhat));
    }
}

}  // namespace

sloth_status decode_embed(const char*, const EmbedArgs& a) {
    for (int64_t b = 0; b < a.batch; ++b) {
        const int64_t id = std::min(std::max<int64_t>(a.ids[b], 0), a.vocab - 1);
        for (int64_t j = 0; j < a.hidden; ++j) {
            const float v = load_as_f32(a.table, a.dtype, id * a.hidden + j);
            store_from_f32(a.out, a.dtype, b * a.hidden + j, a.scale == 1.0f ? v : v * a.scale);
        }
    }
    return SLOTH_OK;
}

sloth_status dense_gemv(const char* fn, const DenseGemvArgs& a) {
    const sloth_dtype dt = a.dtype;
    // x as float once (small); each weight row is read once for every activation row.
    std::vector<float> x(static_cast<size_t>(a.batch * a.k));
    for (int64_t i = 0; i < a.batch * a.k; ++i) x[static_cast<size_t>(i)] = load_as_f32(a.x, dt, i);
    return parallel_ranges(fn, a.m, a.k * a.batch, [&](int64_t r0, int64_t r1) {
        std::vector<float> w(static_cast<size_t>(a.k));
        for (int64_t r = r0; r < r1; ++r) {
            for (int64_t c = 0; c < a.k; ++c) w[static_cast<size_t>(c)] = load_as_f32(a.w, dt, r * a.k + c);
            for (int64_t b = 0; b < a.batch; ++b) {
                double acc = 0.0;
                const float* xb = x.data() + b * a.k;
                for (int64_t c = 0; c < a.k; ++c) acc += static_cast<double>(xb[c]) * static_cast<double>(w[static_cast<size_t>(c)]);
                float v = round_to(dt, static_cast<float>(acc));
                if (a.scale != 1.0f) v = round_to(dt, v * a.scale);
                const int64_t o = b * a.m + r;
                if (a.out_f32) {
                    static_cast<float*>(a.y)[o] = a.softcap > 0.0f ? a.softcap * std::tanh(v / a.softcap) : v;
                } else {
                    if (a.accumulate) v = load_as_f32(a.y, dt, o) + v;
                    store_from_f32(a.y, dt, o, v);
                }
            }
        }
    });
}

sloth_status decode_qk_prep(const char*, const QkPrepArgs& a) {
    const sloth_dtype dt = a.dtype;
    const int64_t hd = a.head_dim, half = a.rotary_dim / 2, len = *a.length;
    std::vector<float> v(static_cast<size_t>(hd)), n(static_cast<size_t>(hd));
    for (int64_t b = 0; b < a.batch; ++b) {
        const int64_t pos = std::min(std::max<int64_t>(a.positions[b], 0), a.max_length - 1);
        const int64_t cs = pos * a.rotary_dim;
        a.valid[b * a.max_length + len] = 1;
        // Heads 0..heads-1 are queries, then kv_heads keys, then kv_heads values.
        for (int64_t h = 0; h < a.heads + 2 * a.kv_heads; ++h) {
            const bool is_q = h < a.heads, is_k = !is_q && h < a.heads + a.kv_heads;
            const int64_t hh = is_q ? h : is_k ? h - a.heads : h - a.heads - a.kv_heads;
            const void* src = is_q ? a.q : is_k ? a.k : a.v;
            const int64_t stride = is_q ? a.q_stride : is_k ? a.k_stride : a.v_stride;
            const void* bias = is_q ? a.q_bias : is_k ? a.k_bias : a.v_bias;
            for (int64_t j = 0; j < hd; ++j) {
                float x = load_as_f32(src, dt, b * stride + hh * hd + j);
                if (bias) x = round_to(dt, x + load_as_f32(bias, dt, hh * hd + j));
                v[static_cast<size_t>(j)] = x;
            }
            const int64_t cache_at = ((b * a.kv_heads + hh) * a.max_length + len) * hd;
            if (!is_q && !is_k) {
                for (int64_t j = 0; j < hd; ++j) store_from_f32(a.v_cache, dt, cache_at + j, v[static_cast<size_t>(j)]);
                continue;
            }
            const void* nw = is_q ? a.q_norm : a.k_norm;
            if (nw) {
                norm_row(v.data(), hd, nw, dt, a.eps, a.unit_offset, n.data());
                v = n;
            }
            for (int64_t i = 0; i < half; ++i) {  // rotate_half, rounded as sloth_rope
                const float v1 = v[static_cast<size_t>(i)], v2 = v[static_cast<size_t>(i + half)];
                const float c1 = load_as_f32(a.cos, dt, cs + i), c2 = load_as_f32(a.cos, dt, cs + i + half);
                const float s1 = load_as_f32(a.sin, dt, cs + i), s2 = load_as_f32(a.sin, dt, cs + i + half);
                n[static_cast<size_t>(i)] = round_to(dt, v1 * c1) - round_to(dt, v2 * s1);
                n[static_cast<size_t>(i + half)] = round_to(dt, v2 * c2) + round_to(dt, v1 * s2);
            }
            for (int64_t i = 2 * half; i < hd; ++i) n[static_cast<size_t>(i)] = v[static_cast<size_t>(i)];
            if (is_q) {
                for (int64_t j = 0; j < hd; ++j) store_from_f32(a.q_out, dt, (b * a.heads + hh) * hd + j, n[static_cast<size_t>(j)]);
            } else {
                for (int64_t j = 0; j < hd; ++j) store_from_f32(a.k_cache, dt, cache_at + j, n[static_cast<size_t>(j)]);
            }
        }
    }
    return SLOTH_OK;
}

sloth_status decode_residual_norm(const char*, const ResidualNormArgs& a) {
    const sloth_dtype dt = a.dtype;
    std::vector<float> h(static_cast<size_t>(a.cols)), d(static_cast<size_t>(a.cols)), y(static_cast<size_t>(a.cols));
    for (int64_t r = 0; r < a.rows; ++r) {
        const int64_t base = r * a.cols;
        for (int64_t j = 0; j < a.cols; ++j) h[static_cast<size_t>(j)] = load_as_f32(a.h, dt, base + j);
        if (a.delta) {
            for (int64_t j = 0; j < a.cols; ++j) d[static_cast<size_t>(j)] = load_as_f32(a.delta, dt, base + j);
            if (a.delta_norm) {
                norm_row(d.data(), a.cols, a.delta_norm, dt, a.eps, a.unit_offset, y.data());
                d = y;
            }
            for (int64_t j = 0; j < a.cols; ++j) {
                h[static_cast<size_t>(j)] = round_to(dt, h[static_cast<size_t>(j)] + d[static_cast<size_t>(j)]);
                store_from_f32(a.h, dt, base + j, h[static_cast<size_t>(j)]);
            }
        }
        norm_row(h.data(), a.cols, a.weight, dt, a.eps, a.unit_offset, y.data());
        for (int64_t j = 0; j < a.cols; ++j) store_from_f32(a.y, dt, base + j, y[static_cast<size_t>(j)]);
    }
    return SLOTH_OK;
}

sloth_status decode_gated_act(const char*, const GatedActArgs& a) {
    const sloth_dtype dt = a.dtype;
    for (int64_t r = 0; r < a.rows; ++r)
        for (int64_t j = 0; j < a.cols; ++j) {
            const float g = load_as_f32(a.gate, dt, r * a.stride + j), u = load_as_f32(a.up, dt, r * a.stride + j);
            store_from_f32(a.out, dt, r * a.cols + j, round_to(dt, gate_activation(a.activation, g)) * u);
        }
    return SLOTH_OK;
}

// The grouped NF4 GEMV's twin: each member as nf4_gemv computes it; gated, the two products into dtype scratch rows
// and decode_gated_act over them, which is by construction what the decoder did before the fusion.
sloth_status nf4_gemv_group(const char* fn, const Nf4GemvGroupArgs& a) {
    if (a.count < 1 || a.count > kNf4GroupMax || (a.gated && (a.count != 2 || a.member[0].m != a.member[1].m)))
        return fail(SLOTH_ERROR_INTERNAL, "%s: an NF4 GEMV group of %d members%s", fn, a.count,
                    a.gated ? ", gated, without exactly two members of equal rows" : "");
    if (a.fold_norm) {  // the residual norm first, as the CUDA launch computes it in its prologue
        ResidualNormArgs n = a.norm;
        if (n.delta) {  // the updated stream goes to norm_h_out; norm.h stays as it was
            std::memcpy(a.norm_h_out, n.h, static_cast<size_t>(n.rows * n.cols * dtype_size(n.dtype)));
            n.h = a.norm_h_out;
        }
        SLOTH_CHECK(decode_residual_norm(fn, n));
    }
    auto product = [&](const Nf4GroupMember& p, void* y, int64_t y_stride) {
        const Nf4GemvArgs g{a.x, a.dtype, a.batch, a.k, p.m, p.packed, p.absmax_codes, p.nested_code_map, p.nested_absmax,
                            p.nested_offset, p.nf4_code_table, a.blocksize, a.nested_blocksize, y};
        return nf4_gemv_rows(fn, g, p.row0, y_stride);
    };
    if (!a.gated) {
        for (int i = 0; i < a.count; ++i) SLOTH_CHECK(product(a.member[i], a.member[i].y, a.member[i].y_stride));
        return SLOTH_OK;
    }
    const int64_t m = a.member[0].m;
    const size_t bytes = static_cast<size_t>(a.batch * m * dtype_size(a.dtype));
    std::vector<unsigned char> gate(bytes), up(bytes);
    SLOTH_CHECK(product(a.member[0], gate.data(), m));
    SLOTH_CHECK(product(a.member[1], up.data(), m));
    const GatedActArgs act{a.dtype, a.activation, a.batch, m, gate.data(), up.data(), m, a.gated_out};
    return decode_gated_act(fn, act);
}

sloth_status decode_bias_add(const char*, const BiasAddArgs& a) {
    for (int64_t r = 0; r < a.rows; ++r)
        for (int64_t j = 0; j < a.cols; ++j) {
            const int64_t i = r * a.cols + j;
            store_from_f32(a.y, a.dtype, i, load_as_f32(a.y, a.dtype, i) + load_as_f32(a.bias, a.dtype, j));
        }
    return SLOTH_OK;
}

sloth_status decode_logits_finish(const char*, const LogitsFinishArgs& a) {
    for (int64_t i = 0; i < a.n; ++i) {
        const float v = load_as_f32(a.src, a.dtype, i);
        a.out[i] = a.softcap > 0.0f ? a.softcap * std::tanh(v / a.softcap) : v;
    }
    return SLOTH_OK;
}

sloth_status decode_increment(const char*, int64_t* length) {
    *length += 1;
    return SLOTH_OK;
}

}  // namespace sloth::cpu
