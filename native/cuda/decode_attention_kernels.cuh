// Attention of one new query per sequence over the KV cache (flash-decoding; CPU twin: cpu/decode_attention_cpu.cpp).
//
// Why split: at batch 1 there are only kv_heads (b, kv head) pairs, far fewer than the GPU's SMs, and each must walk
// the whole cache. So the keys are cut into chunks (decode_chunk: finer for small batches), one block per
// (row, kv head, chunk), and inside a block each of the kDecodeWarpsPerSplit warps walks every 4th key of the chunk
// with its own online softmax, for all the query heads of its KV head at once (GQA: each key and value is read once
// for the group). Each warp writes its (max, sum, accumulators) to `partial`. The grid is fixed by max_length, not by
// the current length (read from device memory), so a captured graph stays valid as the cache grows: blocks past the
// current length exit at once, and the merge reads only the chunks in use.
// Lanes split head_dim (lane + 32 t, t < kT): per key a lane reads kT values of K and of V (coalesced over the warp).
// For head_dim 64 and 128 (and at most 8 query heads per KV head) a warp walks 4 or 2 keys at a time instead, 8 or 16
// lanes per key (walk_sub_warps): fewer shuffles and softmax updates per key, where the walk is instruction-bound.
// Where the kernels are compiled for sm_80+ (the 16-bit dtypes, head_dim 64 or 128, at most 8 query heads per KV
// head), the keys are walked on tensor cores instead, 16 a warp step (decode_attention_mma.cuh), in chunks of at least
// 64 keys at small batches (decode_chunk); the sub-warp walk is then the compute_75 build's.
//
// One launch, not two: the merge of the partials (once a kernel of its own, one block per (row, head)) is done by the
// last block of each (row, kv head) to finish its walk. A decode step at batch 1 is bound by its launch count (~8 us a
// launch on the H100, PDL or not), so the separate combine cost more than its work. The rule:
//   - the blocks in use are those with work: start < keys, i.e. the first ceil(keys / chunk) splits (all of them
//     compute this count from the same *length, which no kernel changes while this one runs); blocks past the length
//     exit before touching the counter, so they are never counted;
//   - a block in use writes its partials, fences (__threadfence: its writes reach the GPU's coherence point before its
//     arrival is seen), and one thread adds 1 to arrivals[b, kv head]; the block whose addition brings the count to
//     the number of blocks in use is the last: every other block in use has arrived, so all partials are written;
//   - the last block stores 0 back into its counter (no other block touches it again in this launch), so every launch
//     and every graph replay starts from zero without a memset, and the next launch on the same counters (the next
//     layer) reads them only after its grid-dependency wait, i.e. after this grid completed;
//   - it fences again and reads the partials with __ldcg (L2, never the non-coherent L1 / read-only path), then
//     merges them for the group's query heads with exactly the operations of the former combine kernel, per output
//     element in the same order (see the tail below), so the output bits are unchanged.
#pragma once

#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "decode_attention_mma.cuh"
#include "decode_attention_parts.h"
#include "decode_ops.cuh"
#include "dtype.cuh"

#include <atomic>
#include <cmath>

namespace sloth::cuda::attn {
namespace {

constexpr int kWarps = static_cast<int>(kDecodeWarpsPerSplit);
constexpr int kThreads = 32 * kWarps;
// head_dim values per lane: kT = 2, 4 or 8 (a template parameter: head_dim <= 64, <= 128, <= 256), so a 64-wide head
// does not carry 8 predicated-off values per lane through every key's dot product, rescale and value update (the walk
// is bound by instructions per key at batch 64).
constexpr int kRow = static_cast<int>(kDecodeMaxHeadDim) + 2;   // floats of one partial, at most: max, sum, accumulators
// The merge stages partials in shared memory, this many floats at once (a tile: the same rows of every head of the
// group), loaded kCopy per thread before any is stored so that a tile costs about one L2 round trip. 16 KB: the L2
// bandwidth of one SM times its latency (64 B a clock x ~300 clocks), so a tile's loads keep the SM's L2 port busy.
constexpr int kStageFloats = 4096;
constexpr int kCopy = kStageFloats / kThreads;
// Shared floats of the kernel: the group's query vectors during the walk, then the merge's tile (the same memory),
// which holds at least one partial of every head.
__host__ __device__ constexpr int shared_floats(int max_group) {
    const int q = max_group * static_cast<int>(kDecodeMaxHeadDim), tile = max_group * kRow;
    const int most = q > tile ? q : tile;
    return most > kStageFloats ? most : kStageFloats;
}
// Every split's 4 partials, at most (decode_splits <= kDecodeSmallMaxSplits): the merge counts them in int.
static_assert(kDecodeSmallMaxSplits * kDecodeWarpsPerSplit <= 4096 && kDecodeMaxSplits <= kDecodeSmallMaxSplits,
              "partials per head must stay small");

// The walk of one chunk with whole warps per key (any head_dim up to 256): lane l holds elements l + 32 t, t < kT, of
// each key; warp w takes keys start + w, start + w + kWarps, ...; each warp writes its partial (max, sum, accumulators)
// for each head of the group.
template <int kDtype, int kMaxG, int kT>
__device__ __forceinline__ void walk_whole_warps(const DecodeAttentionArgs& a, const float (*qs)[kDecodeMaxHeadDim],
                                                 int64_t b, int64_t kvh, int64_t start, int64_t end, int64_t len,
                                                 int64_t split, int64_t splits) {
    const int64_t group = a.heads / a.kv_heads, hd = a.head_dim;
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
    // Partial i of head h (i = split * kWarps + warp) at partial + ((b * heads + h) * per + i) * row.
    const int64_t per = splits * kWarps, row = hd + 2;
    for (int g = 0; g < kMaxG && g < group; ++g) {
        const int64_t h = kvh * group + g;
        float* out = a.partial + (((b * a.heads + h) * per) + split * kWarps + warp) * row;
        if (lane == 0) out[0] = mx[g], out[1] = sum[g];
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            const int64_t d = lane + 32 * t;
            if (d < hd) out[2 + d] = acc[g][t];
        }
    }

}

// Eight consecutive 16-bit elements x[i .. i + 8) packed as a 16-byte load would give them (dtype.cuh's widen8 reads
// them), read one by one: the sub-warp walk's fallback for a cache that is not 16-byte aligned (the tensor-core walk's
// element path, decode_attention_mma.cuh's load_words).
__device__ __forceinline__ uint4 load_words8(const void* x, int64_t i) {
    uint32_t w[4];
    load_words<4, false>(x, i, false, w);
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// The walk with several keys per warp, for head_dim = 256 / kP exactly (64: kP = 4, 128: kP = 2): kL = 32 / kP lanes per
// key, each lane holding 8 consecutive elements, so a key's dot product needs log2(kL) shuffles instead of 5 and a warp
// walks kP keys per step. At batch 64 the whole-warp walk was bound by instructions per key (a 64-wide head: 2 live
// elements per lane, 5 shuffles and the softmax update per key and head); this one issues about a third of them.
// Sub-group p of warp w takes keys start + (i * kWarps + w) * kP + p, i = 0, 1, ..., each with its own online softmax;
// masked keys (and the tail past `end`) change nothing, by selects rather than branches, so the shuffles stay
// convergent. At the end the kP states of a warp are merged pairwise (xor kL, 2 kL, ...: every sub-group ends with the
// same values, float addition being commutative) into the warp's partial, in the whole-warp walk's format.
template <int kDtype, int kMaxG, int kP, bool kCoherent = false>
__device__ __forceinline__ void walk_sub_warps(const DecodeAttentionArgs& a, const float (*qs)[kDecodeMaxHeadDim],
                                               int64_t b, int64_t kvh, int64_t start, int64_t end, int64_t len,
                                               int64_t split, int64_t splits) {
    constexpr int kL = 32 / kP, kE = 8;
    static_assert(kP == 2 || kP == 4, "head_dim 128 or 64");
    const int64_t group = a.heads / a.kv_heads, hd = kL * kE;  // == a.head_dim (the launch checks)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = lane / kL;
    const int64_t d0 = static_cast<int64_t>(lane % kL) * kE;
    float mx[kMaxG], sum[kMaxG], acc[kMaxG][kE];
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
        mx[g] = -INFINITY;
        sum[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < kE; ++e) acc[g][e] = 0.0f;
    }
    const int64_t cache_row = (b * a.kv_heads + kvh) * a.max_length;
    // A key's kE = 8 elements of K and of V (16 bytes each in bf16/f16) as raw 16-bit words, requested kDepth keys
    // ahead of their use. One 16-byte load each where the cache is 16-byte aligned (head_dim 64 or 128 keeps every
    // lane's slice aligned), else eight 2-byte loads packed the same way: the same values either way, so the walk's
    // arithmetic and its bits do not change. Why: with one key ahead and eight 2-byte loads per tensor, each warp
    // had ~1 KB in flight and 16 load instructions per key pair; at batch 64 the walk ran at ~0.65 TB/s (round 16,
    // Qwen3-1.7B). A masked key is fetched too (its row is in the cache) and skipped by the selects below, its V
    // words replaced by zeros first: its weight is 0, but 0 x NaN is NaN, and a padded or stale cache row may hold
    // anything (zeros change no bits where V is finite: the sums never hold -0).
    constexpr int kDepth = 3;
    const bool vector_loads = ((reinterpret_cast<uintptr_t>(a.k_cache) | reinterpret_cast<uintptr_t>(a.v_cache)) & 15u) == 0;
    auto fetch = [&](int64_t jj, uint4& kk, uint4& vv) -> bool {  // no shuffles inside: may diverge
        kk = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
        if (jj >= end) return false;
        const int64_t at = (cache_row + jj) * hd + d0;
        if (vector_loads && kCoherent) {
            kk = ptx::load_l2_v4(static_cast<const uint16_t*>(a.k_cache) + at);
            vv = ptx::load_l2_v4(static_cast<const uint16_t*>(a.v_cache) + at);
        } else if (vector_loads) {
            kk = ptx::load_stream_v4(static_cast<const uint16_t*>(a.k_cache) + at);
            vv = ptx::load_stream_v4(static_cast<const uint16_t*>(a.v_cache) + at);
        } else {
            kk = load_words8(a.k_cache, at);
            vv = load_words8(a.v_cache, at);
        }
        return a.valid[b * a.max_length + jj] != 0 && (a.window <= 0 || jj > len - a.window);
    };
    constexpr int64_t kStride = static_cast<int64_t>(kWarps) * kP;
    int64_t j = start + static_cast<int64_t>(warp) * kP + sub;
    uint4 kr[kDepth], vr[kDepth];
    bool vis[kDepth];
#pragma unroll
    for (int q = 0; q < kDepth; ++q) vis[q] = fetch(j + q * kStride, kr[q], vr[q]);
    for (int64_t j0 = start + static_cast<int64_t>(warp) * kP; j0 < end; j0 += kStride, j += kStride) {  // warp-uniform
        uint4 kn, vn;
        const bool visible_next = fetch(j + kDepth * kStride, kn, vn);  // requested before this key is waited on
        float kc[kE], vc[kE];
        widen8<kDtype>(kr[0], kc);
        const bool visible = vis[0];
        widen8<kDtype>(visible ? vr[0] : make_uint4(0, 0, 0, 0), vc);
#pragma unroll
        for (int g = 0; g < kMaxG; ++g) {
            float dot = 0.0f;
#pragma unroll
            for (int e = 0; e < kE; ++e)
                if (g < group) dot = __fmaf_rn(qs[g][d0 + e], kc[e], dot);
#pragma unroll
            for (int off = kL / 2; off > 0; off >>= 1) dot = __fadd_rn(dot, __shfl_xor_sync(0xFFFFFFFFu, dot, off));
            float sc = __fmul_rn(dot, a.scale);
            if (a.softcap > 0.0f) sc = __fmul_rn(a.softcap, tanhf(__fdiv_rn(sc, a.softcap)));
            const float nm = visible ? fmaxf(mx[g], sc) : mx[g];
            const float corr = visible ? expf(__fsub_rn(mx[g], nm)) : 1.0f;  // exp(-inf) = 0 on the first visible key
            const float pg = visible ? expf(__fsub_rn(sc, nm)) : 0.0f;
            sum[g] = __fadd_rn(__fmul_rn(sum[g], corr), pg);
            mx[g] = nm;
#pragma unroll
            for (int e = 0; e < kE; ++e) acc[g][e] = __fmaf_rn(pg, vc[e], __fmul_rn(acc[g][e], corr));
        }
#pragma unroll
        for (int q = 0; q + 1 < kDepth; ++q) kr[q] = kr[q + 1], vr[q] = vr[q + 1], vis[q] = vis[q + 1];
        kr[kDepth - 1] = kn, vr[kDepth - 1] = vn, vis[kDepth - 1] = visible_next;
    }
    // The warp's kP states merged: (m, s, acc) with a partner's (m2, s2, acc2) -> m' = max, each side weighted by
    // exp(its max - m') (0 for a side that saw no visible key).
#pragma unroll
    for (int off = kL; off < 32; off <<= 1) {
#pragma unroll
        for (int g = 0; g < kMaxG; ++g) {
            const float m2 = __shfl_xor_sync(0xFFFFFFFFu, mx[g], off), s2 = __shfl_xor_sync(0xFFFFFFFFu, sum[g], off);
            const float m = fmaxf(mx[g], m2);
            const float c1 = mx[g] == -INFINITY ? 0.0f : expf(__fsub_rn(mx[g], m));
            const float c2 = m2 == -INFINITY ? 0.0f : expf(__fsub_rn(m2, m));
            sum[g] = __fadd_rn(__fmul_rn(sum[g], c1), __fmul_rn(s2, c2));
#pragma unroll
            for (int e = 0; e < kE; ++e) {
                const float a2 = __shfl_xor_sync(0xFFFFFFFFu, acc[g][e], off);
                acc[g][e] = __fadd_rn(__fmul_rn(acc[g][e], c1), __fmul_rn(a2, c2));
            }
            mx[g] = m;
        }
    }
    if (sub != 0) return;  // the first sub-group writes the warp's partial
    const int64_t per = splits * kWarps, row = hd + 2;
    for (int g = 0; g < kMaxG && g < group; ++g) {
        const int64_t h = kvh * group + g;
        float* out = a.partial + (((b * a.heads + h) * per) + split * kWarps + warp) * row;
        if (lane == 0) out[0] = mx[g], out[1] = sum[g];
#pragma unroll
        for (int e = 0; e < kE; ++e) out[2 + d0 + e] = acc[g][e];
    }
}


// Walks one chunk of the keys for the group's query heads (the partials), then, in the last block of its (row, kv head)
// to arrive, merges all the partials of that (row, kv head) into `out` (the file's header says why and how).
// The whole work of one block of attention_kernel: (row, kv head) `row_kv`, split `split`; smem, s_red, s_max and s_last
// are the kernel's shared arrays. Threads past kThreads (a larger block running this, the persistent step of
// decode_persistent.cuh) take part in the barriers only, and only without merge_in_walk. kCoherent: the cache rows are
// read through L2 by ordinary (not read-only) loads, for a caller whose own grid wrote the current row. kQStaged: the
// group's q rows are already in smem (the first group x kDecodeMaxHeadDim floats), not read from a.q.
template <int kDtype, int kMaxG, int kT, int kP, bool kCoherent = false, bool kQStaged = false>
__device__ __forceinline__ void attention_block(const DecodeAttentionArgs& a, int64_t chunk, int64_t splits, int64_t row_kv,
                                                int64_t split, float* smem, float (*s_red)[kWarps], float* s_max,
                                                int* s_last) {
    static_assert(kT * 32 <= kDecodeMaxHeadDim, "head_dim values per lane");
    float(*qs)[kDecodeMaxHeadDim] = reinterpret_cast<float(*)[kDecodeMaxHeadDim]>(smem);
    const int64_t group = a.heads / a.kv_heads, hd = a.head_dim;
    const int64_t b = row_kv / a.kv_heads, kvh = row_kv % a.kv_heads;
    const int64_t len = *a.length, keys = len + 1;
    const int64_t start = split * chunk;
    if (start >= keys) return;  // not in use: neither counted nor merged
    const int64_t end = start + chunk < keys ? start + chunk : keys;
    const bool walker = threadIdx.x < kThreads;
    if constexpr (!kQStaged) {  // kQStaged: the caller has put the group's q in smem (the fused q/k preparation)
        for (int64_t i = threadIdx.x; walker && i < group * hd; i += kThreads)
            qs[i / hd][i % hd] = load_f32<kDtype>(a.q, (b * a.heads + kvh * group) * hd + i);
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (walker) {
        if constexpr (kP == 1)
            walk_whole_warps<kDtype, kMaxG, kT>(a, qs, b, kvh, start, end, len, split, splits);
        else if constexpr (kP == kMmaKeys)
            walk_tensor_cores<kDtype, 32 * kT, kCoherent>(a, qs, b, kvh, start, end, len, split, splits);
        else
            walk_sub_warps<kDtype, kMaxG, kP, kCoherent>(a, qs, b, kvh, start, end, len, split, splits);
    }
    const int64_t per = splits * kWarps, row = hd + 2;  // partial i of head h at partial + ((b * heads + h) * per + i) * row
    if (!a.merge_in_walk) return;  // the combine kernel merges (block-uniform)

    // ---- Arrival. Every thread's partial stores are made visible GPU-wide before the block's arrival is counted.
    // Blocks of this (row, kv head) with start < keys (at most the grid's splits even for a length past the cache,
    // an invalid input, so that the counters still return to zero).
    const int64_t in_use = (keys + chunk - 1) / chunk < splits ? (keys + chunk - 1) / chunk : splits;
    __threadfence();
    __syncthreads();  // also: every warp is done with qs, which the merge overwrites
    if (threadIdx.x == 0) {
        int* const counter = a.arrivals + row_kv;  // row_kv = b * kv_heads + kvh
        const int arrived = atomicAdd(counter, 1) + 1;
        *s_last = arrived == in_use ? 1 : 0;
        if (arrived == in_use) *counter = 0;  // all in-use blocks have added: nobody else touches it in this launch
    }
    __syncthreads();
    if (!*s_last) return;  // block-uniform
    __threadfence();  // the other blocks' partials, seen through their arrivals, are read after this

    // ---- Merge (the last block only): the former combine kernel's operations, for the group's query heads at once.
    // Per head: m = the largest partial max (a max of the same values, in any order: the same float); the weight of
    // partial i is w_i = (m or max_i is -inf) ? 0 : expf(max_i - m); and per output element d, num and den are the FMA
    // chains num = fma(w_i, acc_i[d], num), den = fma(w_i, sum_i, den) over i = 0, 1, ..., used - 1 in that order,
    // then out = den > 0 ? num / den : 0. Each element's chain is kept by one thread across the tiles (tiles in
    // order, partials in order within a tile): the same operations on the same values in the same order as before.
    const int used = static_cast<int>(in_use * kWarps), G = static_cast<int>(group), R = static_cast<int>(row);
    const int HD = static_cast<int>(hd);
    const int64_t head_stride = per * row;  // floats from one head's partials to the next head's
    const float* const head0 = a.partial + (b * a.heads + kvh * group) * head_stride;
    float m[kMaxG];
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) m[g] = -INFINITY;
    for (int i = static_cast<int>(threadIdx.x); i < used; i += kThreads)
#pragma unroll
        for (int g = 0; g < kMaxG; ++g)
            if (g < G) m[g] = fmaxf(m[g], __ldcg(head0 + g * head_stride + i * row));
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) m[g] = fmaxf(m[g], __shfl_xor_sync(0xFFFFFFFFu, m[g], off));
        if (lane == 0) s_red[g][warp] = m[g];
    }
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < G) {
        float mm = -INFINITY;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, s_red[threadIdx.x][w]);
        s_max[threadIdx.x] = mm;
    }
    // Output elements e = g * head_dim + d of the group: thread t keeps e = t + kThreads r.
    constexpr int kElems = kMaxG * static_cast<int>(kDecodeMaxHeadDim) / kThreads;
    const int elems = G * HD;
    float num[kElems], den[kElems];
#pragma unroll
    for (int r = 0; r < kElems; ++r) num[r] = 0.0f, den[r] = 0.0f;
    const int fit = shared_floats(kMaxG) / (G * R), tile = fit < used ? fit : used;  // >= 1: the buffer holds a partial of every head
    for (int i0 = 0; i0 < used; i0 += tile) {
        const int n = tile < used - i0 ? tile : used - i0, span = n * R, total = G * span;
        __syncthreads();  // the previous tile is consumed (first tile: s_max is written, qs no longer read)
        // Stage partials i0 .. i0 + n - 1 of every head: smem[g * span + t * row + c] = partial (g, i0 + t)[c]. Head g's
        // n partials are contiguous (span floats); x = g * span + o is walked with (g, o) kept incrementally (one
        // division per pass, not one per load).
        const float* const tile0 = head0 + i0 * row;  // head 0's partial i0
        for (int x0 = static_cast<int>(threadIdx.x); x0 < total; x0 += kThreads * kCopy) {
            float v[kCopy];
            int g = x0 / span, o = x0 - g * span;
#pragma unroll
            for (int u = 0; u < kCopy; ++u) {
                v[u] = x0 + u * kThreads < total ? __ldcg(tile0 + g * head_stride + o) : 0.0f;
                for (o += kThreads; o >= span; o -= span) ++g;
            }
#pragma unroll
            for (int u = 0; u < kCopy; ++u)
                if (x0 + u * kThreads < total) smem[x0 + u * kThreads] = v[u];
        }
        __syncthreads();
        // Each staged partial's weight replaces its max (one thread per partial).
        for (int x = static_cast<int>(threadIdx.x); x < G * n; x += kThreads) {
            float* const p = smem + x * R;  // x = g * n + t
            const float pm = p[0], mg = s_max[x / n];
            p[0] = (mg == -INFINITY || pm == -INFINITY) ? 0.0f : expf(__fsub_rn(pm, mg));
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < kElems; ++r) {
            const int e = static_cast<int>(threadIdx.x) + r * kThreads;
            if (e < elems) {
                const int g = e / HD, d = e - g * HD;
                const float* p = smem + g * span;
                for (int t = 0; t < n; ++t, p += R) {
                    num[r] = __fmaf_rn(p[0], p[2 + d], num[r]);
                    den[r] = __fmaf_rn(p[0], p[1], den[r]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kElems; ++r) {
        const int e = static_cast<int>(threadIdx.x) + r * kThreads;
        if (e < elems) {
            const int g = e / HD, d = e - g * HD;
            store_f32<kDtype>(a.out, (b * a.heads + kvh * group + g) * hd + d, den[r] > 0.0f ? __fdiv_rn(num[r], den[r]) : 0.0f);
        }
    }
}

// The merge as a kernel of its own (DecodeAttentionArgs::merge_in_walk false; the default, the last-block merge
// measured slower): one block per (row, head), one thread per head element. It is a chain of dependent L2 round trips
// (the length, the partials' maxima, then the partials themselves), so it is built to have as few as it can: the
// maxima are read once (kept in shared memory for their weights), and the weighted sum over the partials requests
// kCombineUnroll partials' values before it adds any (a loop of four did 16 rounds for the 64 partials of a
// 256-key cache at batch 1; one per partial cost 9 us per call on the H100). The additions keep partial order, so the
// bits do not depend on the unrolling.
constexpr int kCombineMax = 1024;  // partials a block can weigh at once: splits x warps (kDecodeSmallMaxSplits x 4 = 512)
constexpr int kCombineUnroll = 16;

// One (row, head) `bh` of the merge, with any block size (a multiple of 32): the maximum is order-free and each output
// element's chains are one thread's, so the bits do not depend on it. s_w, s_red: shared arrays of kCombineMax and 32.
// kL2: the partials are read through L2 (ld.global.cg), for a caller whose own grid wrote them (the cluster kernel).
template <int kDtype, bool kL2 = false>
__device__ __forceinline__ void combine_block(const DecodeAttentionArgs& a, int64_t chunk, int64_t splits, int64_t bh,
                                              float* s_w, float* s_red) {
    auto load = [](const float* p) { return kL2 ? __ldcg(p) : *p; };
    const int64_t hd = a.head_dim;
    const int64_t keys = *a.length + 1;
    const int64_t used = ((keys + chunk - 1) / chunk) * kWarps, per = splits * kWarps;
    const float* base = a.partial + bh * per * (hd + 2);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < used; i += blockDim.x) {
        const float pm = load(base + i * (hd + 2));
        s_w[i] = pm;  // the partial's max, replaced by its weight below
        m = fmaxf(m, pm);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, off));
    if (lane == 0) s_red[warp] = m;
    __syncthreads();
    m = -INFINITY;
    for (int w = 0; w < warps; ++w) m = fmaxf(m, s_red[w]);
    // Each partial's weight exp(max_i - m) (0 for a partial that saw no visible key), by the thread that stored its
    // max; then den = sum of weight x sum in partial order, as the plain loop added them.
    for (int64_t i = threadIdx.x; i < used; i += blockDim.x) {
        const float pm = s_w[i];
        s_w[i] = (m == -INFINITY || pm == -INFINITY) ? 0.0f : expf(__fsub_rn(pm, m));
    }
    __syncthreads();
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float num = 0.0f, den = 0.0f;
        for (int64_t i = 0; i < used; i += kCombineUnroll) {  // block-uniform bounds: the branches below do not diverge
            float v[kCombineUnroll], sm[kCombineUnroll];
#pragma unroll
            for (int u = 0; u < kCombineUnroll; ++u) {
                const float* p = base + (i + u) * (hd + 2);
                v[u] = i + u < used ? load(p + 2 + d) : 0.0f;
                sm[u] = i + u < used ? load(p + 1) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < kCombineUnroll; ++u) {
                if (i + u < used) {
                    num = __fmaf_rn(s_w[i + u], v[u], num);
                    den = __fmaf_rn(s_w[i + u], sm[u], den);
                }
            }
        }
        store_f32<kDtype>(a.out, bh * hd + d, den > 0.0f ? __fdiv_rn(num, den) : 0.0f);
    }
}

template <int kDtype>
__global__ void attention_combine_kernel(DecodeAttentionArgs a, int64_t chunk, int64_t splits) {
    launch_dependents_early();
    __shared__ float s_w[kCombineMax];
    __shared__ float s_red[32];
    grid_dependency_wait();
    launch_dependents_after_wait();
    combine_block<kDtype>(a, chunk, splits, blockIdx.x, s_w, s_red);
}

// The cluster form's merge, after its block's attention_block: every split's partials made visible to the cluster,
// then split y merges heads y, y + splits, ... of the group (see attention_kernel). s_red: a shared float a warp.
template <int kDtype>
__device__ __forceinline__ void cluster_merge(const DecodeAttentionArgs& a, int64_t chunk, int64_t splits, float* smem,
                                              float* s_red) {
    __syncthreads();  // every warp of this block is done with smem (the group's q) before the merge reuses it
    ptx::cluster_barrier();
    const int64_t group = a.heads / a.kv_heads, b = blockIdx.x / a.kv_heads, kvh = blockIdx.x % a.kv_heads;
    for (int64_t g = blockIdx.y; g < group; g += splits) {  // block-uniform
        combine_block<kDtype, true>(a, chunk, splits, b * a.heads + kvh * group + g, smem, s_red);
        __syncthreads();  // the next head's maxima overwrite smem and s_red
    }
}

// The cache prefetch (kAttentionPrefetchKeys > 0): before its grid-dependency wait, a block asks L2 for the keys and
// values of the first kAttentionPrefetchKeys positions of its chunk, so that its walk's first loads after the wait
// find them there instead of each being a DRAM round trip on the step's dependent path. The length is read before
// the wait: only the previous step's increment writes it, and that has completed before any kernel of this step
// starts (the step's embedding triggers its dependents only after its own wait). Prefetching the row the q/k
// preparation is about to write is harmless: L2 is where writes land. At most the first 64 keys of a chunk: a whole
// 512-key chunk at batch 64 is 256 KB a block, more than L2 holds across the resident blocks. EXPERIMENTAL, 0 (off):
// not yet timed on a GPU (round 32 landed it switched off; tools/gpu-steps/lease-r32-1.sh builds a library with 64).
constexpr int64_t kAttentionPrefetchKeys = 0;

// len: the cache length, *a.length (read by the caller, before its wait).
template <int kDtype>
__device__ __forceinline__ void attention_prefetch(const DecodeAttentionArgs& a, int64_t len, int64_t chunk,
                                                   int64_t row_kv, int64_t split) {
    if constexpr (kAttentionPrefetchKeys > 0) {
        const int64_t keys = len + 1, start = split * chunk;
        if (start >= keys) return;  // not in use
        int64_t n = keys - start < chunk ? keys - start : chunk;
        if (n > kAttentionPrefetchKeys) n = kAttentionPrefetchKeys;
        constexpr int64_t kSize = kDtype == SLOTH_DTYPE_F32 ? 4 : 2, kLine = 128;
        const int64_t b = row_kv / a.kv_heads, kvh = row_kv % a.kv_heads;
        const int64_t first = ((b * a.kv_heads + kvh) * a.max_length + start) * a.head_dim * kSize, bytes = n * a.head_dim * kSize;
        const auto* k0 = static_cast<const unsigned char*>(a.k_cache) + first;
        const auto* v0 = static_cast<const unsigned char*>(a.v_cache) + first;
        // Line by line from the line holding the first byte (the caches need not be 128-byte aligned).
        const int64_t skew = static_cast<int64_t>(reinterpret_cast<uintptr_t>(k0) % kLine);
        const int64_t vskew = static_cast<int64_t>(reinterpret_cast<uintptr_t>(v0) % kLine);
        for (int64_t o = static_cast<int64_t>(threadIdx.x) * kLine; o < bytes + skew || o < bytes + vskew;
             o += static_cast<int64_t>(blockDim.x) * kLine) {
            if (o < bytes + skew) ptx::prefetch_l2(k0 - skew + o);
            if (o < bytes + vskew) ptx::prefetch_l2(v0 - vskew + o);
        }
    } else {
        (void)a, (void)len, (void)chunk, (void)row_kv, (void)split;
    }
}

// grid (batch * kv_heads, splits), kThreads threads: one attention_block each.
//
// kClusterMerge (sm_90+, where a (row, kv head) has at most kDecodeClusterMaxSplits splits: decode_cluster_shape): the
// walk and the merge as ONE launch. The splits of a (row, kv head) form a thread-block cluster (grid (batch * kv_heads,
// splits), cluster (1, splits)); each walks its chunk and writes its partials as without it, then the
// cluster barrier (release/acquire at cluster scope) makes every split's partials visible to the others, and split y
// merges heads y, y + splits, ... of the group exactly as the combine kernel would (combine_block: the same operations
// in the same order, so the same bits). Why: at batch 1 each kernel boundary of the step costs microseconds of latency
// whatever its work (every class 3-11 us a layer, bench/results/2026-12-07-round26), and the combine kernel is one of
// nine a layer; at batch 64 the boundary costs the same few microseconds on a longer step. The last-block merge
// (merge_in_walk) removed the same launch but merged a whole group in one block, after an atomic arrival: slower
// (bench/results/2026-12-07-round26). Here the barrier is the hardware's and the heads are merged in parallel, as by
// the combine kernel's blocks. A split past the keys in use walks nothing and writes nothing; combine_block reads only
// the partials in use. H100, 512 new tokens (bench/results/2026-12-07-round30): batch 1 +3.3% (Qwen3-1.7B) and +2.2%
// (Llama-3.2-1B), batch 4 +2.2% / +4.3%, but batch 64 -9.4% / -10.5%, so decode_cluster_shape takes it up to
// kDecodeClusterMaxBatch rows only.
template <int kDtype, int kMaxG, int kT, int kP, bool kClusterMerge = false>
__global__ void __launch_bounds__(kThreads) attention_kernel(DecodeAttentionArgs a, int64_t chunk, int64_t splits) {
    launch_dependents_early();
    __shared__ float smem[shared_floats(kMaxG)];
    __shared__ float s_red[kMaxG][kWarps];
    __shared__ float s_max[kMaxG];
    __shared__ int s_last;
    static_assert(!kClusterMerge || shared_floats(kMaxG) >= kDecodeClusterMaxSplits * kWarps,
                  "the merge's weights fit the walk's buffer");
    if constexpr (kAttentionPrefetchKeys > 0) attention_prefetch<kDtype>(a, *a.length, chunk, blockIdx.x, blockIdx.y);
    grid_dependency_wait();  // before reading q, the cache, or touching partials and counters
    launch_dependents_after_wait();
    attention_block<kDtype, kMaxG, kT, kP>(a, chunk, splits, blockIdx.x, blockIdx.y, smem, s_red, s_max, &s_last);
    if constexpr (kClusterMerge) cluster_merge<kDtype>(a, chunk, splits, smem, &s_red[0][0]);
}

// The fused q/k preparation (kDecodeFusedPrep, decode_kernels.h): attention_kernel's cluster form with the q/k
// preparation of its (row, kv head) in the same launch, one launch a layer fewer (the step's q/k preparation kernel
// goes). Each block prepares the group's query heads itself, one warp a head (qk_prep_head_warp: qk_prep_head's bits),
// straight into its smem rows of q (q_out is not written: only the attention reads it); the block whose chunk holds the
// new position L also prepares the k and v heads into the cache at L and sets valid[row, L] (each kv head's block of a
// row sets that same byte to 1), then reads them back through L2 (kCoherent: the walk's loads are ordinary ones) after
// the block barrier that orders its own writes before its reads. No other block reads position L. The rest is the
// cluster form's. Not used by the persistent step, whose GPU tests compare it with the launch path bit for bit.
template <int kDtype, int kMaxG, int kT, int kP>
__global__ void __launch_bounds__(kThreads) attention_prep_kernel(DecodeAttentionArgs a, QkPrepArgs p, int64_t chunk,
                                                                  int64_t splits) {
    launch_dependents_early();
    __shared__ float smem[shared_floats(kMaxG)];
    __shared__ float s_red[kMaxG][kWarps];
    __shared__ float s_max[kMaxG];
    __shared__ int s_last;
    __shared__ float s_prep[kWarps][kDecodeMaxHeadDim];  // one head a warp
    __shared__ float s_par[4][kDecodeMaxHeadDim];         // qk_prep_stage_params
    static_assert(shared_floats(kMaxG) >= kMaxG * kDecodeMaxHeadDim, "the group's q rows fit smem");
    static_assert(shared_floats(kMaxG) >= kDecodeClusterMaxSplits * kWarps, "the merge's weights fit the walk's buffer");
    static_assert(32 * kT <= kDecodeMaxHeadDim, "head_dim values per lane");
    const int64_t row_kv = blockIdx.x, split = blockIdx.y;
    const int64_t b = row_kv / a.kv_heads, kvh = row_kv % a.kv_heads, group = a.heads / a.kv_heads;
    // Before the wait, nothing the step writes: the length (the previous step's increment has completed, see
    // qk_prep_kernel), the norm weights and the rotary tables.
    const int64_t len = *p.length;
    qk_prep_stage_params<kDtype>(p, b, s_par);
    attention_prefetch<kDtype>(a, len, chunk, row_kv, split);
    grid_dependency_wait();  // before reading the projections or the cache, or writing anything
    launch_dependents_after_wait();
    __syncthreads();  // s_par is staged
    // The block that holds position L (the last one if L is past the splits, as qk_prep_head would still write it).
    const int64_t holder = len / chunk < splits ? len / chunk : splits - 1;
    const bool holds = split == holder;
    // The group's q heads, then (holder) this kv head's k and v; none for a block past the keys in use (it walks
    // nothing: attention_block returns at once).
    const int64_t items = split * chunk > len ? 0 : group + (holds ? 2 : 0);
    const int warp = threadIdx.x >> 5;
    for (int64_t i = warp; i < items; i += kWarps) {  // warp-uniform
        const int64_t h = i < group ? kvh * group + i : i == group ? a.heads + kvh : a.heads + a.kv_heads + kvh;
        qk_prep_head_warp<kDtype, kT>(p, b, h, len, s_par, s_prep[warp], smem + (i < group ? i : 0) * kDecodeMaxHeadDim);
    }
    if (holds && threadIdx.x == 0) p.valid[b * p.max_length + len] = 1;
    __syncthreads();  // q in smem; the holder's cache row and flag written (a block's own writes, ordered for its reads)
    attention_block<kDtype, kMaxG, kT, kP, true, true>(a, chunk, splits, row_kv, split, smem, s_red, s_max, &s_last);
    cluster_merge<kDtype>(a, chunk, splits, smem, &s_red[0][0]);
}

// Whether attention_kernel<kDtype, kG, kT, kMmaKeys, true> takes this launch (splits: the launch's; asked where the
// tensor-core walk runs). More than 8 blocks a cluster is "non-portable" and must be allowed once per kernel and
// device, before any capture (the decoder's first step of a size is eager); each instantiation of this function keeps
// its own kernel's answers.
// kPrep: the same question for attention_prep_kernel<kDtype, kG, kT, kMmaKeys>, which keeps its own permission.
template <int kDtype, int kG, int kT, bool kPrep = false>
bool cluster_takes(const DecodeAttentionArgs& a, int64_t splits) {
    if (!decode_cluster_shape(a.heads, a.kv_heads, a.head_dim, a.dtype, a.batch, a.max_length, a.merge_in_walk))
        return false;
    if (!clusters_compiled()) return false;
    if (splits <= 8) return true;
    constexpr int kDevices = 64;
    static std::atomic<int> allowed[kDevices];  // per device: 0 not asked yet, 1 yes, 2 no
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kDevices) return false;
    int v = allowed[device].load(std::memory_order_relaxed);
    if (v == 0) {
        cudaError_t e;
        if constexpr (kPrep)
            e = cudaFuncSetAttribute(attention_prep_kernel<kDtype, kG, kT, kMmaKeys>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
        else
            e = cudaFuncSetAttribute(attention_kernel<kDtype, kG, kT, kMmaKeys, true>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
        v = e == cudaSuccess ? 1 : 2;
        if (v == 2) (void)cudaGetLastError();  // not sticky: clear it so the next check does not report it
        allowed[device].store(v, std::memory_order_relaxed);
    }
    return v == 1;
}

template <int kDtype, int kMaxG>
sloth_status launch(const char* fn, const DecodeAttentionArgs& a, cudaStream_t s) {
    SLOTH_CHECK(require_one_launch(fn, a.batch * a.kv_heads));
    // Several keys per warp where head_dim is exactly 64 or 128 (kP = 4, 2) for the 16-bit dtypes, with the group
    // bound rounded up to 1, 2, 4 or 8 (at most 8 query heads per KV head keep the 8-element accumulators of every
    // head in registers; the walk skips heads past the group), else whole warps with kT elements per lane. Few
    // instantiations on purpose: each sub-warp kernel is large, and nvcc compile time (and a compute_75 PTX JIT)
    // grows with their count.
    using Kernel = void (*)(DecodeAttentionArgs, int64_t, int64_t);
    Kernel kernel = a.head_dim <= 64 ? attention_kernel<kDtype, kMaxG, 2, 1>
                  : a.head_dim <= 128 ? attention_kernel<kDtype, kMaxG, 4, 1>
                                      : attention_kernel<kDtype, kMaxG, 8, 1>;
    bool tensor_cores = false;
    Kernel clustered = nullptr;                                   // the tensor-core walk's one-launch form
    bool (*cluster_ok)(const DecodeAttentionArgs&, int64_t) = nullptr;  // and whether it takes this launch
    if constexpr (kMaxG <= 8 && kDtype != SLOTH_DTYPE_F32) {
        constexpr int kG = kMaxG <= 1 ? 1 : kMaxG <= 2 ? 2 : kMaxG <= 4 ? 4 : 8;
        if (a.head_dim == 64) kernel = attention_kernel<kDtype, kG, 2, 4>;
        if (a.head_dim == 128) kernel = attention_kernel<kDtype, kG, 4, 2>;
        // The tensor-core walk (decode_attention_mma.cuh) where the kernels are compiled for sm_80+; the sub-warp walk
        // is the compute_75 build's.
        tensor_cores = (a.head_dim == 64 || a.head_dim == 128) && mma_compiled();
        if (tensor_cores) {
            const bool hd64 = a.head_dim == 64;
            kernel = hd64 ? attention_kernel<kDtype, kG, 2, kMmaKeys> : attention_kernel<kDtype, kG, 4, kMmaKeys>;
            clustered = hd64 ? attention_kernel<kDtype, kG, 2, kMmaKeys, true>
                             : attention_kernel<kDtype, kG, 4, kMmaKeys, true>;
            cluster_ok = hd64 ? cluster_takes<kDtype, kG, 2> : cluster_takes<kDtype, kG, 4>;
        }
    }
    const int64_t chunk = decode_chunk(a.batch, a.max_length, tensor_cores);
    const int64_t splits = decode_splits(a.batch, a.max_length, tensor_cores);
    const dim3 grid(static_cast<unsigned>(a.batch * a.kv_heads), static_cast<unsigned>(splits));
    if (clustered && cluster_ok(a, splits)) {
        // grid (batch * kv_heads, splits), cluster (1, splits)
        SLOTH_KERNEL_LAUNCH(fn, "attention_kernel (clusters)",
                            launch_kernel_cluster(clustered, grid, kThreads, 0, static_cast<unsigned>(splits), s, a, chunk,
                                                  splits));
        return SLOTH_OK;
    }
    if (!a.merge_in_walk) {
        SLOTH_CHECK(require_one_launch(fn, a.batch * a.heads));
        if (splits * kWarps > kCombineMax)
            return fail(SLOTH_ERROR_INTERNAL, "%s: %lld partials per head exceed the combine's %d", fn,
                        static_cast<long long>(splits * kWarps), kCombineMax);
    }
    SLOTH_KERNEL_LAUNCH(fn, "attention_kernel", launch_kernel(kernel, grid, kThreads, s, a, chunk, splits));
    if (!a.merge_in_walk) {
        const int threads = a.head_dim <= 64 ? 64 : (a.head_dim <= 128 ? 128 : 256);
        SLOTH_KERNEL_LAUNCH(fn, "attention_combine_kernel", launch_kernel(attention_combine_kernel<kDtype>, static_cast<unsigned>(a.batch * a.heads),
                                                                          static_cast<unsigned>(threads), s, a, chunk, splits));
    }
    return SLOTH_OK;
}

// The fused q/k preparation and attention (attention_prep_kernel) where it takes the launch: kDecodeFusedPrep, the
// cluster form's shape (the tensor-core walk: bf16/f16, head_dim 64 or 128, at most 8 query heads per KV head) and
// its cluster size allowed. *taken false: nothing launched (the caller runs the two kernels instead).
template <int kDtype, int kMaxG>
sloth_status launch_prep(const char* fn, const QkPrepArgs& p, const DecodeAttentionArgs& a, cudaStream_t s, bool* taken) {
    *taken = false;
    if constexpr (kDecodeFusedPrep && kMaxG <= 8 && kDtype != SLOTH_DTYPE_F32) {
        constexpr int kG = kMaxG <= 1 ? 1 : kMaxG <= 2 ? 2 : kMaxG <= 4 ? 4 : 8;
        // cluster_takes checks the shape (head_dim 64 or 128 among it) and that the kernels are sm_90 code.
        const bool hd64 = a.head_dim == 64;
        const int64_t chunk = decode_chunk(a.batch, a.max_length, true), splits = decode_splits(a.batch, a.max_length, true);
        if (!(hd64 ? cluster_takes<kDtype, kG, 2, true>(a, splits) : cluster_takes<kDtype, kG, 4, true>(a, splits)))
            return SLOTH_OK;
        SLOTH_CHECK(require_one_launch(fn, a.batch * a.kv_heads));
        using Kernel = void (*)(DecodeAttentionArgs, QkPrepArgs, int64_t, int64_t);
        const Kernel kernel = hd64 ? attention_prep_kernel<kDtype, kG, 2, kMmaKeys> : attention_prep_kernel<kDtype, kG, 4, kMmaKeys>;
        const dim3 grid(static_cast<unsigned>(a.batch * a.kv_heads), static_cast<unsigned>(splits));
        SLOTH_KERNEL_LAUNCH(fn, "attention_prep_kernel (clusters)",
                            launch_kernel_cluster(kernel, grid, kThreads, 0, static_cast<unsigned>(splits), s, a, p, chunk, splits));
        *taken = true;
    } else {
        (void)fn, (void)p, (void)a, (void)s;
    }
    return SLOTH_OK;
}

}  // namespace
}  // namespace sloth::cuda::attn

namespace sloth::cuda {

template <int kDtype, int kMaxG>
sloth_status decode_attention_prep_launch(const char* fn, const QkPrepArgs& p, const DecodeAttentionArgs& a,
                                          cudaStream_t s, bool* taken) {
    return attn::launch_prep<kDtype, kMaxG>(fn, p, a, s, taken);
}

// One (dtype, group bound) pair's launch, instantiated by exactly one decode_attention_part_*.cu.
template <int kDtype, int kMaxG>
sloth_status decode_attention_launch(const char* fn, const DecodeAttentionArgs& a, cudaStream_t s) {
    return attn::launch<kDtype, kMaxG>(fn, a, s);
}

}  // namespace sloth::cuda

// Explicit instantiation of one (dtype, group bound) pair, inside namespace sloth::cuda.
#define SLOTH_DECODE_ATTENTION_INSTANTIATE(dtype, max_group) \
    template sloth_status decode_attention_launch<dtype, max_group>(const char*, const DecodeAttentionArgs&, cudaStream_t); \
    template sloth_status decode_attention_prep_launch<dtype, max_group>(const char*, const QkPrepArgs&, \
                                                                         const DecodeAttentionArgs&, cudaStream_t, bool*);
