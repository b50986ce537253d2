// The decode attention's walk on tensor cores (decode_attention_kernels.cuh's third walk, at every batch where the
// kernels are compiled for sm_80+): a warp takes 16 keys at a time and computes their scores for the group's query
// heads, and the weighted sum of their values, as mma.sync m16n8k16 products.
//
// Why: at batch 64 the sub-warp walk was bound by its per-key dependent chains (the dot product's FMA chain, four
// shuffle levels, the online softmax's update and the rescale of 8 accumulators per head, all for every key): 7.7
// cycles per issued instruction and 28% of DRAM bandwidth on Qwen3-1.7B (bench/results/2026-12-07-round19), 1.25 ms
// of a 3.5 ms step. Here 16 keys cost 24 mmas (head_dim 128), one max and one rescale per head, and two shuffles.
//
// The products, per warp and tile of 16 keys (lane l = (g = l / 4, t = l % 4); G <= 8 query heads per KV head):
//   scores  S[h, key] = sum_d q[h, d] K[key, d]: A = the group's q (rows = heads; rows 8..15 and past G are zero),
//           B = K^T (k = head dims, columns = 8 keys), one m16n8 tile per 8 keys;
//   values  O^T[d, h] += sum_key V[key, d] P[h, key]: A = V^T (rows = head dims, k = the 16 keys), B = P^T, whose
//           fragment is exactly the scores' accumulator layout (lane (g, t) holds head g's keys 2t, 2t+1 of each
//           8-key tile), so the probabilities pass from one product to the next in registers.
// Nothing is shuffled or staged in shared memory because every sum is order-free in its index, so each lane's k slots
// are mapped to the bytes it loads itself:
//   - head dims in the scores' k: in step s (of head_dim / 16), lane t's slots {2t, 2t+1, 2t+8, 2t+9} are the dims
//     t * head_dim / 4 + 4s + {0, 1, 2, 3}: over all steps a lane reads one contiguous quarter of each key row of K
//     (and of each q row), in 16-byte loads;
//   - head dims in the values' rows: m-tile m's row r is dim r * head_dim / 16 + m, so lane g's rows g and g + 8 over
//     all m-tiles are two contiguous runs of head_dim / 16 dims of each of its 4 keys' V rows (16- or 8-byte loads);
//     two keys' values of one dim are paired into a register by a byte permute.
// The keys of a tile are requested one tile ahead: K (and the masks) right after the scores used the current K, V
// right after the values used the current V, so each load has the rest of the tile's work to arrive.
//
// At batch 1 the walk's time is its latency, not its work: chunks of 64 keys (one tile per warp of a block; 16 with the
// sub-warp walk) made Llama-3.2-1B's step 15% shorter (bench/results/2026-12-07-round26).
//
// Rounding: q, K and V are used as stored (16-bit); the scores and the sums are float32 (the tensor core's order);
// the probabilities are rounded to the dtype for the values' product, and the running sum adds those rounded values,
// so the partial's numerator and denominator weigh each key alike. The merge of the partials is the other walks' own.
// Masked keys (invalid, outside the window, past the chunk) weigh exactly 0, and their V is never read (zeros), so a
// cache row that holds NaN at a padded position cannot leak into the sum.
#pragma once

#include "../src/decode_kernels.h"
#include "dtype.cuh"
#include "mma.cuh"
#include "ptx.cuh"

#include <cmath>

namespace sloth::cuda::attn {
namespace {

constexpr int kMmaKeys = 16;  // keys a warp takes per step

// kWords consecutive 32-bit words (2 * kWords 16-bit elements) of a cache at element index i: vector loads where the
// caches are 16-byte aligned, else 16-bit loads packed the same way (the same words, so the same bits). kCoherent:
// vector loads through L2 (ld.global.cg, as ptx::load_l2_v4), for the persistent step, whose own grid wrote the current
// cache row; else the read-only path.
template <int kWords, bool kCoherent>
__device__ __forceinline__ void load_words(const void* base, int64_t i, bool vector, uint32_t (&w)[kWords]) {
    static_assert(kWords == 2 || kWords % 4 == 0, "8-byte or 16-byte runs");
    const uint16_t* const p = static_cast<const uint16_t*>(base) + i;
    if (vector) {
        if constexpr (kWords == 2) {
            uint2 v;
            if constexpr (kCoherent) asm volatile("ld.global.cg.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p) : "memory");
            else asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
            w[0] = v.x, w[1] = v.y;
        } else {
#pragma unroll
            for (int u = 0; u < kWords / 4; ++u) {
                const uint4 v = kCoherent ? ptx::load_l2_v4(p + 8 * u) : ptx::load_stream_v4(p + 8 * u);
                w[4 * u] = v.x, w[4 * u + 1] = v.y, w[4 * u + 2] = v.z, w[4 * u + 3] = v.w;
            }
        }
    } else {  // ordinary loads, coherent or not (the sub-warp walk's element path alike)
#pragma unroll
        for (int u = 0; u < kWords; ++u) w[u] = static_cast<uint32_t>(p[2 * u]) | (static_cast<uint32_t>(p[2 * u + 1]) << 16);
    }
}

template <int kWords>
__device__ __forceinline__ void zero_words(uint32_t (&w)[kWords]) {
#pragma unroll
    for (int u = 0; u < kWords; ++u) w[u] = 0u;
}

// The walk of one chunk [start, end) for the group's query heads, head_dim kHd (64 or 128), G <= 8: warp w of the
// block's W = kDecodeWarpsPerSplit takes the tiles start + (i * W + w) * 16, i = 0, 1, ..., and writes its partial
// (max, sum, accumulators) per head in the other walks' format. qs: the group's q in float32 (shared memory; rows past the group are not read).
template <int kDtype, int kHd, bool kCoherent>
__device__ __forceinline__ void walk_tensor_cores(const DecodeAttentionArgs& a, const float (*qs)[kDecodeMaxHeadDim],
                                                  int64_t b, int64_t kvh, int64_t start, int64_t end, int64_t len,
                                                  int64_t split, int64_t splits) {
    static_assert(kHd == 64 || kHd == 128, "head_dim 64 or 128");
    static_assert(kDtype == SLOTH_DTYPE_BF16 || kDtype == SLOTH_DTYPE_F16, "16-bit dtypes");
    constexpr int kSteps = kHd / 16;    // k steps of the scores; m-tiles of the values
    constexpr int kKWords = kHd / 8;    // a lane's words of one K row: kHd / 4 dims
    constexpr int kVWords = kHd / 32;   // a lane's words of one V run: kHd / 16 dims
    constexpr int warps = static_cast<int>(kDecodeWarpsPerSplit);
    const int64_t group = a.heads / a.kv_heads;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bool vector = ((reinterpret_cast<uintptr_t>(a.k_cache) | reinterpret_cast<uintptr_t>(a.v_cache)) & 15u) == 0;

    // q as the scores' A fragment: row g (head g of the group; zero past it), dims t * kHd / 4 + 4s + {0,1} and {2,3}.
    uint32_t qa[kSteps][2];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
        const int d = t * (kHd / 4) + 4 * s;
        const bool head = g < group;
        qa[s][0] = head ? pack2<kDtype>(qs[g][d], qs[g][d + 1]) : 0u;
        qa[s][1] = head ? pack2<kDtype>(qs[g][d + 2], qs[g][d + 3]) : 0u;
    }
    const int64_t cache_row = (b * a.kv_heads + kvh) * a.max_length;
    const uint8_t* const valid = a.valid + b * a.max_length;
    auto visible = [&](int64_t key) {
        return key < end && valid[key] != 0 && (a.window <= 0 || key > len - a.window);
    };
    // Tile j0's loads: K rows j0 + 8n + g (a quarter each), the masks of keys j0 + 8n + 2t + e (the scores' columns of
    // this lane), and V runs of keys j0 + {2t, 2t + 1, 2t + 8, 2t + 9} (the same four keys).
    uint32_t kw[2][kKWords], vw[4][2][kVWords];
    bool vis[2][2];
    auto fetch_k = [&](int64_t j0) {
#pragma unroll
        for (int n = 0; n < 2; ++n) {
            const int64_t key = j0 + 8 * n + g;
            if (key < end) load_words<kKWords, kCoherent>(a.k_cache, (cache_row + key) * kHd + t * (kHd / 4), vector, kw[n]);
            else zero_words(kw[n]);
#pragma unroll
            for (int e = 0; e < 2; ++e) vis[n][e] = visible(j0 + 8 * n + 2 * t + e);
        }
    };
    auto fetch_v = [&](int64_t j0) {
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int64_t key = j0 + 2 * t + (q & 1) + 8 * (q >> 1);
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                if (vis[q >> 1][q & 1])
                    load_words<kVWords, kCoherent>(a.v_cache, (cache_row + key) * kHd + (g + 8 * r) * (kHd / 16), vector, vw[q][r]);
                else
                    zero_words(vw[q][r]);
            }
        }
    };

    float acc[kSteps][4];  // O^T: m-tile m, rows (dims) g and g + 8, columns (heads) 2t, 2t + 1
#pragma unroll
    for (int m = 0; m < kSteps; ++m) acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = 0.0f;
    float mx = -INFINITY, sum = 0.0f;  // head g's running max and this lane's share of its sum
    const int64_t stride = static_cast<int64_t>(warps) * kMmaKeys;
    int64_t j0 = start + static_cast<int64_t>(warp) * kMmaKeys;
    if (j0 < end) {
        fetch_k(j0);
        fetch_v(j0);
    }
    for (; j0 < end; j0 += stride) {  // warp-uniform
        // The two 8-key tiles' scores step by step, the tiles innermost: two independent chains of mmas that the tensor
        // cores interleave, where the tile-by-tile order made one chain of 2 kSteps dependent mmas (each c[n] takes the
        // same mmas in the same order either way, so the same bits).
        float c[2][4];
#pragma unroll
        for (int n = 0; n < 2; ++n) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
#pragma unroll
        for (int s = 0; s < kSteps; ++s)
#pragma unroll
            for (int n = 0; n < 2; ++n) mma_16816<kDtype>(c[n], qa[s][0], 0u, qa[s][1], 0u, kw[n][2 * s], kw[n][2 * s + 1]);
        bool now[2][2];
#pragma unroll
        for (int n = 0; n < 2; ++n) now[n][0] = vis[n][0], now[n][1] = vis[n][1];
        if (j0 + stride < end) fetch_k(j0 + stride);  // K and the masks are free again

        // Head g's scores of the lane's 4 keys; the tile's max over the quad's 16.
        float sc[2][2], tile_max = -INFINITY;
#pragma unroll
        for (int n = 0; n < 2; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                float x = __fmul_rn(c[n][e], a.scale);
                if (a.softcap > 0.0f) x = __fmul_rn(a.softcap, tanhf(__fdiv_rn(x, a.softcap)));
                sc[n][e] = x;
                if (now[n][e]) tile_max = fmaxf(tile_max, x);
            }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xFFFFFFFFu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xFFFFFFFFu, tile_max, 2));
        const float nm = fmaxf(mx, tile_max);
        const bool none = nm == -INFINITY;  // no visible key yet for this head
        const float corr = none ? 1.0f : expf(__fsub_rn(mx, nm));  // exp(-inf) = 0 at the first visible key
        mx = nm;
        uint32_t pb[2];
#pragma unroll
        for (int n = 0; n < 2; ++n) {
            const float p0 = now[n][0] && !none ? expf(__fsub_rn(sc[n][0], nm)) : 0.0f;
            const float p1 = now[n][1] && !none ? expf(__fsub_rn(sc[n][1], nm)) : 0.0f;
            pb[n] = pack2<kDtype>(p0, p1);
        }
        sum = __fmul_rn(sum, corr);
#pragma unroll
        for (int n = 0; n < 2; ++n) {
            float lo, hi;
            widen2<kDtype>(pb[n], lo, hi);
            sum = __fadd_rn(__fadd_rn(sum, lo), hi);
        }

        // The accumulators' columns are heads 2t and 2t + 1, whose factors lanes 8t and 8t + 4 computed.
        const float c_lo = __shfl_sync(0xFFFFFFFFu, corr, 8 * t), c_hi = __shfl_sync(0xFFFFFFFFu, corr, 8 * t + 4);
#pragma unroll
        for (int m = 0; m < kSteps; ++m) {
            acc[m][0] = __fmul_rn(acc[m][0], c_lo), acc[m][1] = __fmul_rn(acc[m][1], c_hi);
            acc[m][2] = __fmul_rn(acc[m][2], c_lo), acc[m][3] = __fmul_rn(acc[m][3], c_hi);
        }
        // V^T's A fragment for m-tile m: dim run offset m (word m / 2, half m % 2) of keys (2t, 2t+1) and (2t+8, 2t+9),
        // rows g (run 0) and g + 8 (run 1).
#pragma unroll
        for (int m = 0; m < kSteps; ++m) {
            uint32_t f[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int r = i & 1, q = 2 * (i >> 1);  // a0: run 0, keys q0/q1; a1: run 1; a2, a3: keys q2/q3
                f[i] = m & 1 ? ptx::byte_perm<0x7632>(vw[q][r][m / 2], vw[q + 1][r][m / 2])
                             : ptx::byte_perm<0x5410>(vw[q][r][m / 2], vw[q + 1][r][m / 2]);
            }
            mma_16816<kDtype>(acc[m], f[0], f[1], f[2], f[3], pb[0], pb[1]);
        }
        if (j0 + stride < end) fetch_v(j0 + stride);  // the masks fetched with K decide which V rows are read
    }
    sum = __fadd_rn(sum, __shfl_xor_sync(0xFFFFFFFFu, sum, 1));
    sum = __fadd_rn(sum, __shfl_xor_sync(0xFFFFFFFFu, sum, 2));

    // Partial i = split * warps + warp of head h at partial + ((b * heads + h) * per + i) * row.
    const int64_t per = splits * warps, row = kHd + 2;
    auto out_of = [&](int64_t gi) {
        return a.partial + (((b * a.heads + kvh * group + gi) * per) + split * warps + warp) * row;
    };
    if (t == 0 && g < group) {
        float* const out = out_of(g);
        out[0] = mx, out[1] = sum;
    }
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int h = 2 * t + e;
        if (h < group) {
            float* const out = out_of(h) + 2;
#pragma unroll
            for (int m = 0; m < kSteps; ++m) {
                out[g * (kHd / 16) + m] = acc[m][e];
                out[(g + 8) * (kHd / 16) + m] = acc[m][2 + e];
            }
        }
    }
}

}  // namespace
}  // namespace sloth::cuda::attn
