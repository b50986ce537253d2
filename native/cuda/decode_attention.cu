// Attention of one new query per sequence over the KV cache (flash-decoding; CPU twin: cpu/decode_attention_cpu.cpp).
//
// Why split: at batch 1 there are only kv_heads (b, kv head) pairs, far fewer than the GPU's SMs, and each must walk
// the whole cache. So the keys are cut into chunks (decode_chunk: finer for small batches), one block per
// (row, kv head, chunk), and inside a block each of the kDecodeWarpsPerSplit warps walks every 4th key of the chunk
// with its own online softmax, for all the query heads of its KV head at once (GQA: each key and value is read once
// for the group). Each warp writes its (max, sum, accumulators) to `partial`; the combine kernel merges them per
// (row, head). The grid is fixed by max_length, not by the current length (read from device memory), so a captured
// graph stays valid as the cache grows: blocks past the current length exit at once, and the combine reads only the
// chunks in use.
// Lanes split head_dim (lane + 32 t, t < kT): per key a lane reads kT values of K and of V (coalesced over the warp).
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "dtype.cuh"

#include <cmath>

namespace sloth::cuda {
namespace {

constexpr int kWarps = static_cast<int>(kDecodeWarpsPerSplit);
constexpr int kThreads = 32 * kWarps;
constexpr int kT = static_cast<int>(kDecodeMaxHeadDim / 32);  // head_dim values per lane, at most

template <int kDtype, int kMaxG>
__global__ void __launch_bounds__(kThreads) attention_partial_kernel(DecodeAttentionArgs a, int64_t chunk, int64_t splits) {
    __shared__ float qs[kMaxG][kDecodeMaxHeadDim];
    grid_dependency_wait();
    allow_dependent_launch();
    const int64_t group = a.heads / a.kv_heads, hd = a.head_dim;
    const int64_t b = blockIdx.x / a.kv_heads, kvh = blockIdx.x % a.kv_heads, split = blockIdx.y;
    const int64_t len = *a.length, keys = len + 1;
    const int64_t start = split * chunk;
    if (start >= keys) return;  // the combine reads only the chunks in use
    const int64_t end = start + chunk < keys ? start + chunk : keys;
    for (int64_t i = threadIdx.x; i < group * hd; i += kThreads)
        qs[i / hd][i % hd] = load_f32<kDtype>(a.q, (b * a.heads + kvh * group) * hd + i);
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float mx[kMaxG], sum[kMaxG], acc[kMaxG][kT];
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
        mx[g] = -INFINITY;
        sum[g] = 0.0f;
#pragma unroll
        for (int t = 0; t < kT; ++t) acc[g][t] = 0.0f;
    }
    const int64_t cache_row = (b * a.kv_heads + kvh) * a.max_length;
    // Key j's K and V values and whether it is visible, all requested at once (no load waits on another). The loop
    // below asks for the next key before it computes the current one, so a warp has two keys' loads in flight instead
    // of three dependent round trips per key (mask, then K, then V once the softmax weight is known): at batch 64 the
    // walk was latency-bound, 1/6 of the bandwidth. A key that turns out masked was read for nothing (the cache holds
    // max_length rows, so the read is in bounds) and is skipped as before: the arithmetic and its order are unchanged.
    auto fetch = [&](int64_t jj, float (&kk)[kT], float (&vv)[kT]) -> bool {
        if (jj >= end) return false;
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            const int64_t d = lane + 32 * t;
            kk[t] = d < hd ? load_f32<kDtype>(a.k_cache, (cache_row + jj) * hd + d) : 0.0f;
            vv[t] = d < hd ? load_f32<kDtype>(a.v_cache, (cache_row + jj) * hd + d) : 0.0f;
        }
        return a.valid[b * a.max_length + jj] != 0 && (a.window <= 0 || jj > len - a.window);
    };
    float kv[kT], vcur[kT];
    bool visible = fetch(start + warp, kv, vcur);
    for (int64_t j = start + warp; j < end; j += kWarps) {
        float k_next[kT], v_next[kT];
        const bool visible_next = fetch(j + kWarps, k_next, v_next);
        if (visible) {  // warp-uniform
            float p[kMaxG];
#pragma unroll
            for (int g = 0; g < kMaxG; ++g) {
                float dot = 0.0f;
#pragma unroll
                for (int t = 0; t < kT; ++t) {
                    const int64_t d = lane + 32 * t;
                    if (d < hd && g < group) dot = __fmaf_rn(qs[g][d], kv[t], dot);
                }
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) dot = __fadd_rn(dot, __shfl_xor_sync(0xFFFFFFFFu, dot, off));
                float s = __fmul_rn(dot, a.scale);
                if (a.softcap > 0.0f) s = __fmul_rn(a.softcap, tanhf(__fdiv_rn(s, a.softcap)));
                const float nm = fmaxf(mx[g], s);
                const float corr = expf(__fsub_rn(mx[g], nm));  // exp(-inf) = 0 on the first visible key
                p[g] = expf(__fsub_rn(s, nm));
                sum[g] = __fadd_rn(__fmul_rn(sum[g], corr), p[g]);
                mx[g] = nm;
#pragma unroll
                for (int t = 0; t < kT; ++t) acc[g][t] = __fmul_rn(acc[g][t], corr);
            }
#pragma unroll
            for (int t = 0; t < kT; ++t)
#pragma unroll
                for (int g = 0; g < kMaxG; ++g) acc[g][t] = __fmaf_rn(p[g], vcur[t], acc[g][t]);
        }
#pragma unroll
        for (int t = 0; t < kT; ++t) kv[t] = k_next[t], vcur[t] = v_next[t];
        visible = visible_next;
    }
    const int64_t per = splits * kWarps;
    for (int g = 0; g < kMaxG && g < group; ++g) {
        const int64_t h = kvh * group + g;
        float* out = a.partial + (((b * a.heads + h) * per) + split * kWarps + warp) * (hd + 2);
        if (lane == 0) out[0] = mx[g], out[1] = sum[g];
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            const int64_t d = lane + 32 * t;
            if (d < hd) out[2 + d] = acc[g][t];
        }
    }
}

// One block per (row, head). The partial results' maxima are read in parallel (one per thread, then a block max), so
// the only loop over the partials is the weighted sum of each output feature, unrolled so that several loads are in
// flight (a plain loop read one partial per DRAM/L2 round trip: 9 us per call at batch 1 on the H100).
constexpr int kCombineMax = 1024;  // partials a block can weigh at once: splits x warps (kDecodeSmallMaxSplits x 4 = 512)

template <int kDtype>
__global__ void attention_combine_kernel(DecodeAttentionArgs a, int64_t chunk, int64_t splits) {
    __shared__ float s_w[kCombineMax];
    __shared__ float s_red[32];
    grid_dependency_wait();
    allow_dependent_launch();
    const int64_t bh = blockIdx.x, hd = a.head_dim;
    const int64_t keys = *a.length + 1;
    const int64_t used = ((keys + chunk - 1) / chunk) * kWarps, per = splits * kWarps;
    const float* base = a.partial + bh * per * (hd + 2);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < used; i += blockDim.x) m = fmaxf(m, base[i * (hd + 2)]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, off));
    if (lane == 0) s_red[warp] = m;
    __syncthreads();
    m = -INFINITY;
    for (int w = 0; w < warps; ++w) m = fmaxf(m, s_red[w]);
    // Each partial's weight exp(max_i - m) (0 for a partial that saw no visible key), then den = sum of weight x sum
    // in partial order, as the plain loop added them.
    for (int64_t i = threadIdx.x; i < used; i += blockDim.x) {
        const float pm = base[i * (hd + 2)];
        s_w[i] = (m == -INFINITY || pm == -INFINITY) ? 0.0f : expf(__fsub_rn(pm, m));
    }
    __syncthreads();
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float num = 0.0f, den = 0.0f;
        int64_t i = 0;
        for (; i + 4 <= used; i += 4) {  // four partials' loads in flight, then added in partial order
            float v[4], sm[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const float* p = base + (i + u) * (hd + 2);
                v[u] = p[2 + d];
                sm[u] = p[1];
            }
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                num = __fmaf_rn(s_w[i + u], v[u], num);
                den = __fmaf_rn(s_w[i + u], sm[u], den);
            }
        }
        for (; i < used; ++i) {
            const float* p = base + i * (hd + 2);
            num = __fmaf_rn(s_w[i], p[2 + d], num);
            den = __fmaf_rn(s_w[i], p[1], den);
        }
        store_f32<kDtype>(a.out, bh * hd + d, den > 0.0f ? __fdiv_rn(num, den) : 0.0f);
    }
}

template <int kDtype, int kMaxG>
sloth_status launch(const char* fn, const DecodeAttentionArgs& a, cudaStream_t s) {
    const int64_t chunk = decode_chunk(a.batch, a.max_length), splits = decode_splits(a.batch, a.max_length);
    SLOTH_CHECK(require_one_launch(fn, a.batch * a.kv_heads));
    SLOTH_CHECK(require_one_launch(fn, a.batch * a.heads));
    if (splits * kWarps > kCombineMax)
        return fail(SLOTH_ERROR_INTERNAL, "%s: %lld partials per head exceed the combine's %d", fn,
                    static_cast<long long>(splits * kWarps), kCombineMax);
    const dim3 grid(static_cast<unsigned>(a.batch * a.kv_heads), static_cast<unsigned>(splits));
    SLOTH_KERNEL_LAUNCH(fn, "attention_partial_kernel", launch_kernel(attention_partial_kernel<kDtype, kMaxG>, grid, kThreads, s, a, chunk, splits));
    const int threads = a.head_dim <= 64 ? 64 : (a.head_dim <= 128 ? 128 : 256);
    SLOTH_KERNEL_LAUNCH(fn, "attention_combine_kernel", launch_kernel(attention_combine_kernel<kDtype>, static_cast<unsigned>(a.batch * a.heads),
                                                                      static_cast<unsigned>(threads), s, a, chunk, splits));
    return SLOTH_OK;
}

// The group size as a compile-time bound (registers per lane grow with it): exact up to 8, else 16.
template <int kDtype>
sloth_status launch_for_group(const char* fn, const DecodeAttentionArgs& a, cudaStream_t s) {
    static_assert(kDecodeMaxGroup == 16, "one case per bound below");
    switch (a.heads / a.kv_heads) {
        case 1: return launch<kDtype, 1>(fn, a, s);
        case 2: return launch<kDtype, 2>(fn, a, s);
        case 3: return launch<kDtype, 3>(fn, a, s);
        case 4: return launch<kDtype, 4>(fn, a, s);
        case 5: return launch<kDtype, 5>(fn, a, s);
        case 6: return launch<kDtype, 6>(fn, a, s);
        case 7: return launch<kDtype, 7>(fn, a, s);
        case 8: return launch<kDtype, 8>(fn, a, s);
        default: return launch<kDtype, 16>(fn, a, s);
    }
}

}  // namespace

sloth_status decode_attention(const char* fn, const DecodeAttentionArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) { return launch_for_group<decltype(dt)::value>(fn, a, s); });
}

}  // namespace sloth::cuda
