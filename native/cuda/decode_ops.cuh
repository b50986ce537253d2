// Row- and head-wise bodies of the decoding engine's small kernels, shared by their own kernels (decode_ops.cu) and the
// persistent decode step (decode_persistent.cuh), which runs them as phases of one grid: the same operations in the
// same order, so the same bits either way.
#pragma once

#include "../src/decode_kernels.h"
#include "decode_norm.cuh"
#include "dtype.cuh"

namespace sloth::cuda {

// Threads of the q/k preparation of one head (qk_prep_kernel's block).
constexpr int kQkPrepThreads = 128;

// Row b of the embedding: out[b, :] = table[clamp(ids[b]), :] (times scale unless 1). Any block size.
template <int kDtype>
__device__ __forceinline__ void embed_row(const int64_t* ids, const void* table, int64_t hidden, int64_t vocab,
                                          float scale, void* out, int64_t b) {
    int64_t id = ids[b];
    id = id < 0 ? 0 : (id >= vocab ? vocab - 1 : id);
    for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) {
        const float v = load_f32<kDtype>(table, id * hidden + j);
        store_f32<kDtype>(out, b * hidden + j, scale == 1.0f ? v : __fmul_rn(v, scale));
    }
}

// What qk_prep_head reads that no kernel of the step writes, loaded apart so that a kernel can issue it before its
// grid-dependency wait (qk_prep_kernel): the cache length and the row's position (written between steps), and this
// thread's elements of the norm weight and of the rotary tables (parameters). Thread t < kQkPrepThreads holds elements
// t + kQkPrepThreads i (i < kQkPrepPer). Why: loaded after the wait, they were two more dependent round trips to L2
// (the norm weight after the sum of squares, the tables after the position) on the path of a launch that runs once a
// layer.
constexpr int kQkPrepPer = static_cast<int>(kDecodeMaxHeadDim) / kQkPrepThreads;
struct QkPrepPre {
    int64_t len;
    float nw[kQkPrepPer], cos[kQkPrepPer], sin[kQkPrepPer];
};

template <int kDtype>
__device__ __forceinline__ QkPrepPre qk_prep_preload(const QkPrepArgs& a, int64_t b, int64_t h) {
    QkPrepPre p;
    const int64_t hd = a.head_dim, t0 = threadIdx.x < kQkPrepThreads ? threadIdx.x : hd;
    p.len = *a.length;
    int64_t pos = a.positions[b];
    pos = pos < 0 ? 0 : (pos >= a.max_length ? a.max_length - 1 : pos);
    const bool is_q = h < a.heads, is_k = !is_q && h < a.heads + a.kv_heads;
    const void* nw = is_q ? a.q_norm : is_k ? a.k_norm : nullptr;
    const int64_t cs = pos * a.rotary_dim;
#pragma unroll
    for (int i = 0; i < kQkPrepPer; ++i) {
        const int64_t j = t0 + static_cast<int64_t>(kQkPrepThreads) * i;
        p.nw[i] = nw && j < hd ? load_f32<kDtype>(nw, j) : 0.0f;
        const bool rot = (is_q || is_k) && j < a.rotary_dim;
        p.cos[i] = rot ? load_f32<kDtype>(a.cos, cs + j) : 0.0f;
        p.sin[i] = rot ? load_f32<kDtype>(a.sin, cs + j) : 0.0f;
    }
    return p;
}

// Head h of row b (q heads, then k, then v): the bias, the per-head RMSNorm (q/k), RoPE on the first rotary_dim
// elements, the store into q_out or the cache; head 0 also marks valid[b, L]. Thread t < kQkPrepThreads takes elements
// t, t + kQkPrepThreads, ...; threads past it (a larger block) take part in the barriers only, adding zeros to the
// norm's sum (exact), so the bits do not depend on the block size. v: kDecodeMaxHeadDim shared floats; scratch: one
// shared float per warp of the block. pre: qk_prep_preload's values for (b, h).
template <int kDtype>
__device__ __forceinline__ void qk_prep_head(const QkPrepArgs& a, int64_t b, int64_t h, const QkPrepPre& pre, float* v,
                                             float* scratch) {
    const int64_t hd = a.head_dim, half = a.rotary_dim / 2;
    const int64_t t0 = threadIdx.x < kQkPrepThreads ? threadIdx.x : hd;  // past hd: no element
    const int64_t len = pre.len;
    if (h == 0 && threadIdx.x == 0) a.valid[b * a.max_length + len] = 1;
    const bool is_q = h < a.heads, is_k = !is_q && h < a.heads + a.kv_heads;
    const int64_t hh = is_q ? h : is_k ? h - a.heads : h - a.heads - a.kv_heads;
    const void* src = is_q ? a.q : is_k ? a.k : a.v;
    const int64_t stride = is_q ? a.q_stride : is_k ? a.k_stride : a.v_stride;
    const void* bias = is_q ? a.q_bias : is_k ? a.k_bias : a.v_bias;
    const int64_t cache_at = ((b * a.kv_heads + hh) * a.max_length + len) * hd;
    float ss = 0.0f;
    for (int64_t j = t0; j < hd; j += kQkPrepThreads) {
        float x = load_f32<kDtype>(src, b * stride + hh * hd + j);
        if (bias) x = round_to<kDtype>(__fadd_rn(x, load_f32<kDtype>(bias, hh * hd + j)));
        if (!is_q && !is_k) store_f32<kDtype>(a.v_cache, cache_at + j, x);
        v[j] = x;
        ss = __fadd_rn(ss, __fmul_rn(x, x));
    }
    if (!is_q && !is_k) return;  // block-uniform
    const void* nw = is_q ? a.q_norm : a.k_norm;
    if (nw) {
        const float rstd = rstd_from(block_sum(ss, scratch), hd, a.eps);
#pragma unroll
        for (int i = 0; i < kQkPrepPer; ++i) {
            const int64_t j = t0 + static_cast<int64_t>(kQkPrepThreads) * i;
            if (j < hd) v[j] = norm_value<kDtype>(v[j], rstd, pre.nw[i], a.unit_offset);
        }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kQkPrepPer; ++i) {
        const int64_t j = t0 + static_cast<int64_t>(kQkPrepThreads) * i;
        if (j >= hd) continue;
        float o = v[j];
        if (j < half)
            o = __fsub_rn(round_to<kDtype>(__fmul_rn(v[j], pre.cos[i])), round_to<kDtype>(__fmul_rn(v[j + half], pre.sin[i])));
        else if (j < 2 * half)
            o = __fadd_rn(round_to<kDtype>(__fmul_rn(v[j], pre.cos[i])), round_to<kDtype>(__fmul_rn(v[j - half], pre.sin[i])));
        if (is_q) store_f32<kDtype>(a.q_out, (b * a.heads + hh) * hd + j, o);
        else store_f32<kDtype>(a.k_cache, cache_at + j, o);
    }
}

// ---- The same preparation by one warp a head (the fused attention's form: decode_attention_kernels.cuh,
// attention_prep_kernel). Lane l holds elements j = l + 32 e (e < kT; kT = head_dim / 32 elements a lane, at most 8).
// The bits are qk_prep_head's: its 128 threads' sums of squares are rebuilt here, thread t = j % 128 being lane
// t % 32's partial w = t / 32; each partial sums its elements in qk_prep_head's order (j, then j + 128), is reduced
// over the warp by block_sum's butterfly, and the four are added in warp order after 0 as block_sum does
// (native/tools/qk_prep_order_model.py checks in float32 that the two orders agree for head_dim 64, 128 and 256).
// What no kernel of the step writes, staged in shared memory before the grid-dependency wait by the whole block (any
// size): par[0] the q norm weight, par[1] the k norm weight, par[2] and par[3] the rotary cos and sin at row b's
// position, each [head_dim] (zeros where absent). Shared memory, not registers: held in registers across the wait and
// into the attention's walk, they made nvcc 11.8 spill 52 bytes a thread at head_dim 128 (16 now, as the cluster form
// it replaces: 16).
template <int kDtype>
__device__ __forceinline__ void qk_prep_stage_params(const QkPrepArgs& a, int64_t b, float (*par)[kDecodeMaxHeadDim]) {
    int64_t pos = a.positions[b];
    pos = pos < 0 ? 0 : (pos >= a.max_length ? a.max_length - 1 : pos);
    const int64_t cs = pos * a.rotary_dim;
    for (int64_t j = threadIdx.x; j < a.head_dim; j += blockDim.x) {
        par[0][j] = a.q_norm ? load_f32<kDtype>(a.q_norm, j) : 0.0f;
        par[1][j] = a.k_norm ? load_f32<kDtype>(a.k_norm, j) : 0.0f;
        par[2][j] = j < a.rotary_dim ? load_f32<kDtype>(a.cos, cs + j) : 0.0f;
        par[3][j] = j < a.rotary_dim ? load_f32<kDtype>(a.sin, cs + j) : 0.0f;
    }
}

// Head h of row b (q heads, then k, then v, as qk_prep_head numbers them) by the calling warp: a q head's result into
// q_smem[j] (the value q_out would hold, rounded to the dtype), k and v into the cache at row len. par:
// qk_prep_stage_params' tables; buf: this warp's head_dim shared floats. The valid flag is the caller's.
// Warp-synchronous (__syncwarp only).
template <int kDtype, int kT>
__device__ __forceinline__ void qk_prep_head_warp(const QkPrepArgs& a, int64_t b, int64_t h, int64_t len,
                                                  const float (*par)[kDecodeMaxHeadDim], float* buf, float* q_smem) {
    static_assert(kT >= 1 && kT <= 8, "at most 256 elements a head");
    const int lane = threadIdx.x & 31;
    const int64_t hd = a.head_dim, half = a.rotary_dim / 2;
    const bool is_q = h < a.heads, is_k = !is_q && h < a.heads + a.kv_heads;
    const int64_t hh = is_q ? h : is_k ? h - a.heads : h - a.heads - a.kv_heads;
    const void* src = is_q ? a.q : is_k ? a.k : a.v;
    const int64_t stride = is_q ? a.q_stride : is_k ? a.k_stride : a.v_stride;
    const void* bias = is_q ? a.q_bias : is_k ? a.k_bias : a.v_bias;
    const int64_t cache_at = ((b * a.kv_heads + hh) * a.max_length + len) * hd;
    float x[kT];
#pragma unroll
    for (int e = 0; e < kT; ++e) {
        const int64_t j = lane + 32 * e;
        x[e] = 0.0f;
        if (j < hd) {
            x[e] = load_f32<kDtype>(src, b * stride + hh * hd + j);
            if (bias) x[e] = round_to<kDtype>(__fadd_rn(x[e], load_f32<kDtype>(bias, hh * hd + j)));
        }
    }
    if (!is_q && !is_k) {  // warp-uniform
#pragma unroll
        for (int e = 0; e < kT; ++e)
            if (lane + 32 * e < hd) store_f32<kDtype>(a.v_cache, cache_at + lane + 32 * e, x[e]);
        return;
    }
    const void* nw = is_q ? a.q_norm : a.k_norm;
    if (nw) {
        // qk_prep_head's thread t = lane + 32 w holds elements t and t + 128: its partial is lane's e = w, then e = w + 4.
        float part[4];
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            float ss = 0.0f;
#pragma unroll
            for (int e = w; e < kT; e += 4) ss = __fadd_rn(ss, __fmul_rn(x[e], x[e]));
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) ss = __fadd_rn(ss, __shfl_xor_sync(0xFFFFFFFFu, ss, off));
            part[w] = ss;
        }
        float total = 0.0f;
#pragma unroll
        for (int w = 0; w < 4; ++w) total = __fadd_rn(total, part[w]);
        const float rstd = rstd_from(total, hd, a.eps);
#pragma unroll
        for (int e = 0; e < kT; ++e)
            if (lane + 32 * e < hd) x[e] = norm_value<kDtype>(x[e], rstd, par[is_q ? 0 : 1][lane + 32 * e], a.unit_offset);
    }
    __syncwarp();  // the previous head's readers of buf are done
#pragma unroll
    for (int e = 0; e < kT; ++e)
        if (lane + 32 * e < hd) buf[lane + 32 * e] = x[e];
    __syncwarp();
#pragma unroll
    for (int e = 0; e < kT; ++e) {
        const int64_t j = lane + 32 * e;
        if (j >= hd) continue;
        float o = x[e];
        if (j < half)
            o = __fsub_rn(round_to<kDtype>(__fmul_rn(x[e], par[2][j])), round_to<kDtype>(__fmul_rn(buf[j + half], par[3][j])));
        else if (j < 2 * half)
            o = __fadd_rn(round_to<kDtype>(__fmul_rn(x[e], par[2][j])), round_to<kDtype>(__fmul_rn(buf[j - half], par[3][j])));
        if (is_q) q_smem[j] = round_to<kDtype>(o);
        else store_f32<kDtype>(a.k_cache, cache_at + j, o);
    }
}

}  // namespace sloth::cuda
