// y[b, r] = x[b, :] · W[r, :] for a few activation rows (decoding) with W in NF4 (bitsandbytes layout, double-quantized
// absmax), dequantized inside the dot product.
//
// Why this shape of kernel: at batch 1..8 a linear layer is a matrix-vector product whose cost is reading W once. In
// NF4 that is 0.5 byte per weight (+ 1/blocksize byte of absmax code), a quarter of the bf16 weight; dequantizing to
// bf16 first would write and re-read 2 bytes per weight. So the only DRAM stream that matters is `packed`, and the
// kernel is built to keep it at full bandwidth:
//  - Warp per row (split over up to 8 warps for small grids, see the kernel): a lane reads 16 bytes (32 weights) per
//    load, so one warp-wide load covers 512 contiguous bytes of a row (fully coalesced), and two such loads are in
//    flight per lane before any arithmetic.
//  - The packed weight streams past L1 (ld.global.nc.L1::no_allocate) with an L2 evict-first policy: each byte is
//    read exactly once. The activations x (batch × k, a few KB) are the reused operand: every warp of the grid reads
//    them, so they go through the read-only cache with ordinary allocation (16-byte loads, L1/L2 hits after the first
//    warp), and each 8-value slice of x is read once per chunk.
//  - 32 weights aligned to 32 always share one absmax block (every supported blocksize is a power of two >= 32), so a
//    lane computes one scale (nested code × nested absmax + offset, as bitsandbytes) per 16-byte load. The NF4 table
//    is in shared memory: 16 floats in 16 banks, so a warp's lookups never conflict.
//  - Each weight is rounded to x's dtype before it is used (the values sloth_nf4_dequantize would write), so for
//    bf16/fp16 every product is exact in float32 and the result is `x @ dequantize(W).T` up to summation order.
//    Products accumulate with fused multiply-adds (exact products: no rounding is lost) in kBatch
//    registers; at the end each sum is reduced across the warp with a shuffle butterfly (a fixed order: a call always
//    gives the same bits) and the block adds its warps' slices in order.
//  - kBatch is a template parameter (1..8) so the accumulators stay in registers.
// The fast path needs k % 32 == 0 (every row starts on a 16-byte boundary of `packed` and of x) and 16-byte aligned
// packed and x; otherwise the same kernel takes an element-wise path (byte loads, same values, same order per lane
// within the warp reduction, slower).
// Grouped launches (the decoder's q/k/v and gate/up, which share x): one grid whose blocks are the single launches
// blocks of each member one after the other (prefix sums of their block counts); a block runs exactly the code of the
// single kernel for its member, so every member's result has the bits of its own launch. The gated form puts the
// same rows of the gate and the up projection in one block and writes act(gate) * up instead of the two products.
// Why: at batch 1 the decoder's NF4 GEMVs are bound by per-launch latency (~8 us each on the H100 whatever the size,
// bench/results/2026-12-06-h100-round7), so fewer launches is the lever, not bandwidth.
#pragma once

#include "../src/decode_kernels.h"
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "decode_norm.cuh"
#include "gate_activation.cuh"
#include "nf4_gemv_parts.h"
#include "ptx.cuh"

namespace sloth::cuda::nf4 {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
static_assert(kWarps == kNf4GemvWarps, "nf4_gemv_slices (decode_kernels.h) splits rows over this block's warps");

// Eight consecutive activations as float32 from their 16 bytes (a; f32: 32 bytes, a then b).
template <int kDtype>
__device__ __forceinline__ void x8_from_words(uint4 a, uint4 b, float (&v)[8]) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) {
        v[0] = __uint_as_float(a.x), v[1] = __uint_as_float(a.y), v[2] = __uint_as_float(a.z), v[3] = __uint_as_float(a.w);
        v[4] = __uint_as_float(b.x), v[5] = __uint_as_float(b.y), v[6] = __uint_as_float(b.z), v[7] = __uint_as_float(b.w);
    } else {
        (void)b;
        widen8<kDtype>(a, v);
    }
}

// Eight consecutive activations x[i .. i + 8) as float32 (i a multiple of 8, the address 16-byte aligned).
template <int kDtype>
__device__ __forceinline__ void load_x8(const void* x, int64_t i, float (&v)[8]) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) {
        const float* p = static_cast<const float*>(x) + i;
        x8_from_words<kDtype>(ptx::load_cached_v4(p), ptx::load_cached_v4(p + 4), v);
    } else {
        x8_from_words<kDtype>(ptx::load_cached_v4(static_cast<const uint16_t*>(x) + i), make_uint4(0, 0, 0, 0), v);
    }
}

// A compile-time index (for lambdas that need their argument as a constant).
template <uint32_t kI>
struct Index {
    static constexpr uint32_t value = kI;
};

// The eight weights of one packed 4-byte word (byte j: element 2j in the high nibble, 2j + 1 in the low one), each
// nf4 × scale rounded to the dtype.
// How, in few instructions (main's batch-1 kernel spent about 9 per weight: shift, mask, table-base add, load, scale,
// round, widen, FFMA, widen x; bench/results/2026-12-06-h100-round12): the table sits at a 256-byte aligned shared
// address `table` (nf4_table_address), so an entry's address is that address with its low byte replaced by 4 × nibble.
// Two shifts and two masks put 4 × every nibble in a byte of its own (lo: the low nibbles, hi: the high ones), and one
// byte permute per weight builds the address from that byte and the table's upper three bytes: 1.5 instructions per
// weight instead of 3. Two products are rounded by one packed conversion (round2_to). The values are those of a
// plain table lookup, rounded as before: the same bits.
// The products nf4 × scale of one packed word's four bytes, unrounded: pair(j, element 2j (the high nibble), element
// 2j + 1) for j = 0..3 (j an Index). Shared by decode8 and the tensor-core kernels' decode8_packed.
template <class Pair>
__device__ __forceinline__ void decode8_products(uint32_t word, float scale, uint32_t table, Pair&& pair) {
    const uint32_t lo = (word << 2) & 0x3C3C3C3Cu, hi = (word >> 2) & 0x3C3C3C3Cu;
    // Byte 0 from byte j of the offsets, bytes 1-3 from the table address (bytes 5-7 of {table, offsets}).
    auto entry = [&](uint32_t offsets, auto j) {
        return ptx::load_shared_f32(ptx::byte_perm<0x7650u + decltype(j)::value>(offsets, table));
    };
    auto one = [&](auto j) { pair(j, __fmul_rn(entry(hi, j), scale), __fmul_rn(entry(lo, j), scale)); };
    one(Index<0>{});
    one(Index<1>{});
    one(Index<2>{});
    one(Index<3>{});
}

template <int kDtype>
__device__ __forceinline__ void decode8(uint32_t word, float scale, uint32_t table, float (&w)[8]) {
    decode8_products(word, scale, table, [&](auto j, float even, float odd) {
        round2_to<kDtype>(even, odd, w[2 * decltype(j)::value], w[2 * decltype(j)::value + 1]);
    });
}

// Where a launch's activations x come from (the XLoad of row_slice_dot): eight values x[b, c .. c + 8) as float32.
// PlainX reads x from memory; StagedX (grouped launches that fold the residual RMSNorm in, see GroupNorm) reads the
// rows the block's prologue computed into shared memory, as decode_residual_norm would have written them.
template <int kDtype>
struct PlainX {
    const void* x;
    int64_t k;
    __device__ __forceinline__ void operator()(int b, int64_t c, float (&v)[8]) const { load_x8<kDtype>(x, b * k + c, v); }
};

// The folded residual RMSNorm of a grouped launch (Nf4GemvGroupArgs::fold_norm): the stream h (and the delta added to
// it, optionally normalized first: Gemma's sandwich norm) as [batch, k] rows, the norm weights, and where block 0
// writes the results for later readers: the new stream (h_out, with a delta) and the normalized rows (y).
struct GroupNorm {
    const void* h;
    const void* delta;
    const void* delta_norm;
    const void* weight;
    void* h_out;
    void* y;
    float eps;
    bool unit_offset;
};

// The folded norm's values, as decode_residual_norm computes them (decode_norm.cuh): the same float operations in the
// same order, so the bits match.
template <int kDtype>
struct NormValues {
    GroupNorm n;
    int64_t k;
    // h[b, j] after the residual add, rounded to the dtype (decode_residual_norm's stream value).
    __device__ __forceinline__ float stream(int b, int64_t j, float delta_rstd) const {
        float h = load_f32<kDtype>(n.h, b * k + j);
        if (n.delta) {
            float d = load_f32<kDtype>(n.delta, b * k + j);
            if (n.delta_norm) d = norm_value<kDtype>(d, delta_rstd, load_f32<kDtype>(n.delta_norm, j), n.unit_offset);
            h = round_to<kDtype>(__fadd_rn(h, d));
        }
        return h;
    }
};

// x rows staged in shared memory in the dtype ([batch, k], 16-byte aligned), read like PlainX.
template <int kDtype>
struct StagedX {
    const unsigned char* s;
    int64_t k;
    __device__ __forceinline__ void operator()(int b, int64_t c, float (&v)[8]) const {
        constexpr int kSize = kDtype == SLOTH_DTYPE_F32 ? 4 : 2;
        const uint4* p = reinterpret_cast<const uint4*>(s + (b * k + c) * kSize);
        x8_from_words<kDtype>(p[0], kDtype == SLOTH_DTYPE_F32 ? p[1] : make_uint4(0, 0, 0, 0), v);
    }
};

// Block-wide, after the grid-dependency wait: each activation row's RMSNorm factors, summed in
// residual_norm_reg_kernel's order (thread t takes elements t, t + 256, ...; block_sum) so the values match its bits,
// then the normalized rows into shared memory (s_x, [batch, k] in the dtype). Block 0 also writes the new stream and
// the normalized rows to memory for the kernels after this one.
template <int kDtype, int kBatch>
__device__ __forceinline__ void norm_prologue(const NormValues<kDtype>& x, unsigned char* s_x, float* scratch) {
    static_assert(kThreads == 256, "the residual-norm kernels' thread count, for their summation order");
    const GroupNorm& n = x.n;
    for (int b = 0; b < kBatch; ++b) {
        float delta_rstd = 0.0f;
        if (n.delta && n.delta_norm) {
            float ss = 0.0f;
            for (int64_t j = threadIdx.x; j < x.k; j += kThreads) {
                const float d = load_f32<kDtype>(n.delta, b * x.k + j);
                ss = __fadd_rn(ss, __fmul_rn(d, d));
            }
            delta_rstd = rstd_from(block_sum(ss, scratch), x.k, n.eps);
        }
        float ss = 0.0f;
        for (int64_t j = threadIdx.x; j < x.k; j += kThreads) {
            const float h = x.stream(b, j, delta_rstd);
            ss = __fadd_rn(ss, __fmul_rn(h, h));
        }
        const float rstd = rstd_from(block_sum(ss, scratch), x.k, n.eps);
        for (int64_t j = threadIdx.x; j < x.k; j += kThreads) {
            const float h = x.stream(b, j, delta_rstd);
            const float y = norm_value<kDtype>(h, rstd, load_f32<kDtype>(n.weight, j), n.unit_offset);
            store_f32<kDtype>(s_x, b * x.k + j, y);
            if (blockIdx.x == 0) {
                if (n.delta) store_f32<kDtype>(n.h_out, b * x.k + j, h);
                store_f32<kDtype>(n.y, b * x.k + j, y);
            }
        }
    }
    __syncthreads();  // s_x complete before any warp reads it
}

// One NF4 weight as the kernels read it: pointers of the whole matrix (rows are absolute).
struct Nf4Weight {
    const uint8_t* packed;
    const uint8_t* absmax_codes;
    const float* code_map;  // the nested code map (256 floats)
    const float* nested_absmax;
    const float* nested_offset;
    const float* nf4_table;  // 16 floats
};

// Every NF4 table the vector path reads lives at a 256-byte aligned shared address (decode8 builds entry addresses by
// replacing the address's low byte); the gated kernel's two tables are 256 bytes apart ([2][kNf4TableStride]).
constexpr int kNf4TableStride = 64;  // floats: 256 bytes

// Block-wide, by a block of any size (the lane kernels' and the wide GEMM's 256 threads, the paired gated tiles' 128,
// the 16-warp tiles' 512): the NF4 table and the nested code map of w into shared memory.
__device__ __forceinline__ void stage_tables(const Nf4Weight& w, float* s_nf4, float* s_map) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        if (i < 16) s_nf4[i] = w.nf4_table[i];
        s_map[i] = w.code_map[i];
    }
}

// This warp's share of one row's dot products: acc[b] += x[b, c] * W[row, c] over the columns of slice `slice` of
// kSlices (split-K: a row's chunks of 32 weights = 16 packed bytes may be spread over kSlices warps of the block so
// that small matrices, the k/v projections or a 2048-row down projection, still put thousands of warps to work: at
// batch 1 the kernel is latency-bound and the number of 16-byte loads in flight sets its speed). Lane l takes the
// slice's chunks l, l + 32, ... in order. Block-wide: stage() (which fills the shared tables s_nf4/s_map that this
// warp reads) and a barrier run inside, after the first weight loads are issued, so every thread of the block calls
// this once. The nested code map sits in shared memory, so a block scale costs one byte load.
template <int kDtype, int kBatch, bool kVector, int kSlices, class Stage, class XLoad, class Prologue>
__device__ __forceinline__ void row_slice_dot(const Nf4Weight& w, const void* __restrict__ x, int64_t k, int64_t row,
                                              int slice, int log2_blocksize, int log2_nested_span,
                                              const float* s_nf4, const float* s_map, Stage&& stage,
                                              const XLoad& xload, Prologue&& prologue, float (&acc)[kBatch]) {
    const int lane = threadIdx.x & 31;
    const uint64_t keep = ptx::policy_evict_last();
    if constexpr (kVector) {
        const uint64_t stream = ptx::policy_evict_first();
        const int64_t chunks = k >> 5;
        const int64_t per = (chunks + kSlices - 1) / kSlices;
        const int64_t q0 = slice * per, q1 = q0 + per < chunks ? q0 + per : chunks;
        // A lane's first two chunks: their weight bytes, block codes and nested absmax are requested before the tables
        // are staged in shared memory, so the DRAM latency of the weights overlaps the table loads and the barrier.
        const int64_t qa = q0 + lane, qb = qa + 32;
        const uint32_t table = ptx::shared_address(s_nf4);  // 256-byte aligned (kNf4TableStride)
        uint4 wa = make_uint4(0, 0, 0, 0), wb = make_uint4(0, 0, 0, 0);
        uint32_t ca = 0, cb = 0;
        float na = 0.0f, nb = 0.0f;
        if (qa < q1) {
            const int64_t i = row * k + (qa << 5);
            wa = ptx::load_stream_v4(w.packed + (i >> 1), stream);
            ca = ptx::load_u8_keep(w.absmax_codes + (i >> log2_blocksize), keep);
            na = __ldg(w.nested_absmax + (i >> log2_nested_span));
        }
        if (qb < q1) {
            const int64_t i = row * k + (qb << 5);
            wb = ptx::load_stream_v4(w.packed + (i >> 1), stream);
            cb = ptx::load_u8_keep(w.absmax_codes + (i >> log2_blocksize), keep);
            nb = __ldg(w.nested_absmax + (i >> log2_nested_span));
        }
        stage();
        const float offset = __ldg(w.nested_offset);
        // Everything above reads weights only; x comes from the previous kernel (programmatic launch: see
        // cuda_common.cuh), so the weights' DRAM latency overlaps that kernel's tail.
        grid_dependency_wait();
        launch_dependents_after_wait();
        __syncthreads();
        prologue();  // block-wide: a folded norm's factors (after the wait: they come from earlier kernels)
        auto consume = [&](uint4 words, uint32_t code, float nested, int64_t c0) {
            const float scale = __fadd_rn(__fmul_rn(s_map[code], nested), offset);
#pragma unroll
            for (int s4 = 0; s4 < 4; ++s4) {
                const uint32_t word = s4 == 0 ? words.x : s4 == 1 ? words.y : s4 == 2 ? words.z : words.w;
                float wv[8];
                decode8<kDtype>(word, scale, table, wv);
#pragma unroll
                for (int b = 0; b < kBatch; ++b) {
                    float xv[8];
                    xload(b, c0 + 8 * s4, xv);
#pragma unroll
                    for (int e = 0; e < 8; ++e) acc[b] = __fmaf_rn(xv[e], wv[e], acc[b]);
                }
            }
        };
        if (qa < q1) consume(wa, ca, na, qa << 5);
        if (qb < q1) consume(wb, cb, nb, qb << 5);
        for (int64_t q = qb + 32; q < q1; q += 32) {  // slices longer than 64 chunks (rare: see nf4_gemv_slices)
            const int64_t i = row * k + (q << 5);
            consume(ptx::load_stream_v4(w.packed + (i >> 1), stream),
                    ptx::load_u8_keep(w.absmax_codes + (i >> log2_blocksize), keep),
                    __ldg(w.nested_absmax + (i >> log2_nested_span)), q << 5);
        }
    } else {
        stage();
        const float offset = __ldg(w.nested_offset);
        grid_dependency_wait();
        launch_dependents_after_wait();
        __syncthreads();
        prologue();
        const int64_t per = (k + kSlices - 1) / kSlices;
        const int64_t c1 = (slice + 1) * per < k ? (slice + 1) * per : k;
        for (int64_t c = slice * per + lane; c < c1; c += 32) {
            const int64_t i = row * k + c;
            const uint32_t byte = w.packed[i >> 1];
            const uint32_t nibble = (i & 1) ? (byte & 0xFu) : (byte >> 4);
            const uint32_t code = ptx::load_u8_keep(w.absmax_codes + (i >> log2_blocksize), keep);
            const float scale = __fadd_rn(__fmul_rn(s_map[code], __ldg(w.nested_absmax + (i >> log2_nested_span))), offset);
            const float wv = round_to<kDtype>(__fmul_rn(s_nf4[nibble], scale));
#pragma unroll
            for (int b = 0; b < kBatch; ++b) acc[b] = __fmaf_rn(load_f32<kDtype>(x, b * k + c), wv, acc[b]);
        }
    }
}

// Each warp's sums reduced across its lanes with a shuffle butterfly (a fixed order: a call always gives the same
// bits) into s_part[warp * kBatch + b].
template <int kBatch>
__device__ __forceinline__ void store_warp_sums(const float (&acc)[kBatch], float* s_part) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
        float v = acc[b];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xFFFFFFFFu, v, off));
        if (lane == 0) s_part[warp * kBatch + b] = v;
    }
}

// The dot product of the block's row slot `slot` (warps slot * kSlices .. + kSlices - 1) for activation row b: its
// slices' sums added in slice order.
template <int kBatch, int kSlices>
__device__ __forceinline__ float slot_sum(const float* s_part, int slot, int b) {
    float v = s_part[slot * kSlices * kBatch + b];
#pragma unroll
    for (int s2 = 1; s2 < kSlices; ++s2) v = __fadd_rn(v, s_part[(slot * kSlices + s2) * kBatch + b]);
    return v;
}

// One block of the plain GEMV: rows [block * R, block * R + R) (R = kWarps / kSlices, one row slot of kSlices warps
// each) of rows [0, m) of a member whose first weight row is row0; y[b * y_stride + r] rounded to the dtype. The
// whole body of the single kernel, and of each block of the grouped kernel.
template <int kDtype, int kBatch, bool kVector, int kSlices, class XLoad, class Prologue>
__device__ __forceinline__ void gemv_block(const Nf4Weight& w, const void* __restrict__ x, int64_t k, int64_t row0,
                                           int64_t m, int64_t block, int log2_blocksize, int log2_nested_span,
                                           void* __restrict__ y, int64_t y_stride, float* s_nf4, float* s_map,
                                           float* s_part, const XLoad& xload, Prologue&& prologue) {
    constexpr int kRowsPerBlock = kWarps / kSlices;
    const int warp = threadIdx.x >> 5;
    const int64_t row_raw = block * kRowsPerBlock + warp / kSlices;
    const int64_t row = row_raw < m ? row_raw : m - 1;  // past the end: computed, not written (barriers follow)
    float acc[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) acc[b] = 0.0f;
    row_slice_dot<kDtype, kBatch, kVector, kSlices>(w, x, k, row0 + row, warp % kSlices, log2_blocksize,
                                                    log2_nested_span, s_nf4, s_map,
                                                    [&] { stage_tables(w, s_nf4, s_map); }, xload, prologue, acc);
    store_warp_sums<kBatch>(acc, s_part);
    __syncthreads();
    if (threadIdx.x < kRowsPerBlock * kBatch) {
        const int r = static_cast<int>(threadIdx.x) / kBatch, b = static_cast<int>(threadIdx.x) % kBatch;
        const int64_t out_row = block * kRowsPerBlock + r;
        const float v = slot_sum<kBatch, kSlices>(s_part, r, b);
        if (out_row < m) store_f32<kDtype>(y, b * y_stride + out_row, v);
    }
}

template <int kDtype, int kBatch, bool kVector, int kSlices>
__global__ void __launch_bounds__(kThreads) nf4_gemv_kernel(Nf4Weight w, const void* __restrict__ x, int64_t k,
                                                            int64_t m, int log2_blocksize, int log2_nested_span,
                                                            void* __restrict__ y) {
    launch_dependents_early();
    __shared__ __align__(256) float s_nf4[16];
    __shared__ float s_map[256];
    __shared__ float s_part[kWarps * kBatch];
    gemv_block<kDtype, kBatch, kVector, kSlices>(w, x, k, 0, m, blockIdx.x, log2_blocksize, log2_nested_span, y, m,
                                                 s_nf4, s_map, s_part, PlainX<kDtype>{x, k}, [] {});
}

// A grouped launch as the kernels read it (passed by value: kernel parameters, no device copy to manage).
struct GroupMember {
    Nf4Weight w;
    int64_t row0, m;
    void* y;
    int64_t y_stride;
    int32_t slices;       // nf4_gemv_slices of the whole matrix: 1, 2, 4 or 8
    int32_t first_block;  // prefix sum of the earlier members' block counts
};
struct Group {
    GroupMember member[kNf4GroupMax];
    int32_t count;
    const void* x;
    int64_t k;
    int32_t log2_blocksize, log2_nested_span;
    GroupNorm norm;  // the folded residual norm (kernels instantiated with kFold only)
};

// The activation source and prologue of a grouped launch: the folded norm (kFold: x computed into the dynamic shared
// memory s_x by the prologue) or x as it is in memory. Calls body(xload, prologue). Staged / Plain: the loaders of the
// two sources ({s_x, k} / {x, k}); the tensor-core kernels pass their 16-byte ones (nf4_gemv_tiles.cuh).
template <int kDtype, int kBatch, bool kFold, template <int> class Staged = StagedX, template <int> class Plain = PlainX,
          class Body>
__device__ __forceinline__ void with_input(const Group& g, unsigned char* s_x, float* s_scratch, Body&& body) {
    if constexpr (kFold) {
        const NormValues<kDtype> values{g.norm, g.k};
        body(Staged<kDtype>{s_x, g.k}, [&] { norm_prologue<kDtype, kBatch>(values, s_x, s_scratch); });
    } else {
        body(Plain<kDtype>{g.x, g.k}, [] {});
    }
}

// The member that block `bid` of a plain grouped launch belongs to (blocks of member i: [first_block_i,
// first_block_i+1)). Selected with constant indices: indexing a kernel's parameter array at run time would copy it to
// local memory.
__device__ __forceinline__ GroupMember member_of(const Group& g, int64_t bid) {
    GroupMember d = g.member[0];
    if (g.count > 1 && bid >= g.member[1].first_block) d = g.member[1];
    if (g.count > 2 && bid >= g.member[2].first_block) d = g.member[2];
    return d;
}

// Block `block` of group member d (plain form): gemv_block with the member's split-K slices.
template <int kDtype, int kBatch, class XLoad, class Prologue>
__device__ __forceinline__ void member_block(const Group& g, const GroupMember& d, int64_t block, float* s_nf4,
                                             float* s_map, float* s_part, const XLoad& xload, Prologue&& prologue) {
    switch (d.slices) {  // uniform over the block
        case 1:
            gemv_block<kDtype, kBatch, true, 1>(d.w, g.x, g.k, d.row0, d.m, block, g.log2_blocksize, g.log2_nested_span,
                                                d.y, d.y_stride, s_nf4, s_map, s_part, xload, prologue);
            break;
        case 2:
            gemv_block<kDtype, kBatch, true, 2>(d.w, g.x, g.k, d.row0, d.m, block, g.log2_blocksize, g.log2_nested_span,
                                                d.y, d.y_stride, s_nf4, s_map, s_part, xload, prologue);
            break;
        case 4:
            gemv_block<kDtype, kBatch, true, 4>(d.w, g.x, g.k, d.row0, d.m, block, g.log2_blocksize, g.log2_nested_span,
                                                d.y, d.y_stride, s_nf4, s_map, s_part, xload, prologue);
            break;
        default:
            gemv_block<kDtype, kBatch, true, 8>(d.w, g.x, g.k, d.row0, d.m, block, g.log2_blocksize, g.log2_nested_span,
                                                d.y, d.y_stride, s_nf4, s_map, s_part, xload, prologue);
            break;
    }
}

// Each block runs gemv_block for the member it belongs to (blocks of member i: [first_block_i, first_block_i+1)).
template <int kDtype, int kBatch, bool kFold>
__global__ void __launch_bounds__(kThreads) nf4_gemv_group_kernel(Group g) {
    launch_dependents_early();
    __shared__ __align__(256) float s_nf4[16];
    __shared__ float s_map[256];
    __shared__ float s_part[kWarps * kBatch];
    __shared__ float s_scratch[kWarps];
    extern __shared__ __align__(16) unsigned char s_x[];  // kFold: [batch, k] normalized rows (fold_smem_bytes)
    const int64_t bid = blockIdx.x;
    const GroupMember d = member_of(g, bid);
    with_input<kDtype, kBatch, kFold>(g, s_x, s_scratch, [&](const auto& xload, auto&& prologue) {
        member_block<kDtype, kBatch>(g, d, bid - d.first_block, s_nf4, s_map, s_part, xload, prologue);
    });
}

// The gated form: a block holds P = kWarps / kSlices / 2 row slots of the gate (member 0) and the same P rows of the
// up projection (member 1), each row computed as gemv_block computes it; the first P * kBatch threads then round both
// sums to the dtype (the values the plain launch would store) and write out[b * m + r] = act(g) * u as
// gated_act_kernel does (gate_activation.cuh).
// One block of the gated form (block `block` of the grid: rows [block * P, block * P + P) of both members), the whole
// body of nf4_gemv_gated_kernel (and of the persistent decode step's gate/up phase). s_nf4, s_map: the two members'
// tables; s_part: kWarps * kBatch floats.
template <int kDtype, int kBatch, int kSlices, class XLoad, class Prologue>
__device__ __forceinline__ void gated_block(const Group& g, sloth_gate_activation activation, void* __restrict__ out,
                                            int64_t block, float (*s_nf4)[kNf4TableStride], float (*s_map)[256],
                                            float* s_part, const XLoad& xload, Prologue&& prologue) {
    constexpr int kPairRows = kWarps / kSlices / 2;
    static_assert(kPairRows >= 1, "a block holds at least one row of each member");
    const int warp = threadIdx.x >> 5, slot = warp / kSlices, half = slot / kPairRows;  // half 0: gate, 1: up
    GroupMember d = g.member[0];  // constant indices (see member_of)
    if (half == 1) d = g.member[1];
    const int64_t m = g.member[0].m;
    const int64_t row_raw = block * kPairRows + slot % kPairRows;
    const int64_t row = row_raw < m ? row_raw : m - 1;  // past the end: computed, not written (barriers follow)
    float acc[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) acc[b] = 0.0f;
    row_slice_dot<kDtype, kBatch, true, kSlices>(
        d.w, g.x, g.k, d.row0 + row, warp % kSlices, g.log2_blocksize, g.log2_nested_span, s_nf4[half], s_map[half],
        [&] {
            stage_tables(g.member[0].w, s_nf4[0], s_map[0]);
            stage_tables(g.member[1].w, s_nf4[1], s_map[1]);
        },
        xload, prologue, acc);
    store_warp_sums<kBatch>(acc, s_part);
    __syncthreads();
    if (threadIdx.x < kPairRows * kBatch) {
        const int r = static_cast<int>(threadIdx.x) / kBatch, b = static_cast<int>(threadIdx.x) % kBatch;
        const int64_t out_row = block * kPairRows + r;
        const float gate = round_to<kDtype>(slot_sum<kBatch, kSlices>(s_part, r, b));
        const float up = round_to<kDtype>(slot_sum<kBatch, kSlices>(s_part, kPairRows + r, b));
        if (out_row < m) store_f32<kDtype>(out, b * m + out_row, gated_product<kDtype>(activation, gate, up));
    }
}

// The gated form: a block holds P = kWarps / kSlices / 2 row slots of the gate (member 0) and the same P rows of the
// up projection (member 1), each row computed as gemv_block computes it; the first P * kBatch threads then round both
// sums to the dtype (the values the plain launch would store) and write out[b * m + r] = act(g) * u as
// gated_act_kernel does (gate_activation.cuh).
template <int kDtype, int kBatch, int kSlices, bool kFold>
__global__ void __launch_bounds__(kThreads) nf4_gemv_gated_kernel(Group g, sloth_gate_activation activation,
                                                                  void* __restrict__ out) {
    launch_dependents_early();
    __shared__ __align__(256) float s_nf4[2][kNf4TableStride];  // the gate's and the up projection's tables
    __shared__ float s_map[2][256];
    __shared__ float s_part[kWarps * kBatch];
    __shared__ float s_scratch[kWarps];
    extern __shared__ __align__(16) unsigned char s_x[];  // kFold: [batch, k] normalized rows
    with_input<kDtype, kBatch, kFold>(g, s_x, s_scratch, [&](const auto& xload, auto&& prologue) {
        gated_block<kDtype, kBatch, kSlices>(g, activation, out, blockIdx.x, s_nf4, s_map, s_part, xload, prologue);
    });
}

}  // namespace
}  // namespace sloth::cuda::nf4

#include "nf4_gemv_tiles.cuh"

namespace sloth::cuda::nf4 {
namespace {

template <int kDtype, int kBatch, int kSlices>
sloth_status launch_sliced(const char* fn, const Nf4GemvArgs& a, bool vector, int lb, int ln, cudaStream_t stream) {
    constexpr int kRowsPerBlock = kWarps / kSlices;
    const int64_t blocks = ceil_div(a.m, static_cast<int64_t>(kRowsPerBlock));
    SLOTH_CHECK(require_one_launch(fn, blocks));
    const dim3 grid(static_cast<unsigned>(blocks));
    const Nf4Weight w{a.packed, a.absmax_codes, a.nested_code_map, a.nested_absmax, a.nested_offset, a.nf4_code_table};
    SLOTH_KERNEL_LAUNCH(fn, "nf4_gemv_kernel",
                        launch_kernel(vector ? nf4_gemv_kernel<kDtype, kBatch, true, kSlices> : nf4_gemv_kernel<kDtype, kBatch, false, kSlices>,
                                      grid, kThreads, stream, w, a.x, a.k, a.m, lb, ln, a.y));
    return SLOTH_OK;
}

template <int kDtype, int kBatch>
sloth_status launch(const char* fn, const Nf4GemvArgs& a, cudaStream_t stream) {
    if (tiles_take<kDtype>(a.k, a.x, &a.packed, 1)) return launch_tiles<kDtype, kBatch>(fn, a, stream);
    const bool vector = a.k % 32 == 0 && reinterpret_cast<uintptr_t>(a.packed) % 16 == 0 &&
                        reinterpret_cast<uintptr_t>(a.x) % 16 == 0;
    const int lb = log2_exact(a.blocksize);
    const int ln = lb + log2_exact(a.nested_blocksize);
    switch (nf4_gemv_slices(a.m, a.k)) {
        case 1: return launch_sliced<kDtype, kBatch, 1>(fn, a, vector, lb, ln, stream);
        case 2: return launch_sliced<kDtype, kBatch, 2>(fn, a, vector, lb, ln, stream);
        case 4: return launch_sliced<kDtype, kBatch, 4>(fn, a, vector, lb, ln, stream);
        default: return launch_sliced<kDtype, kBatch, 8>(fn, a, vector, lb, ln, stream);
    }
}

// The kernels' view of a validated group; blocks: the grid of the plain grouped launch.
inline Group group_of(const Nf4GemvGroupArgs& a, int64_t* blocks) {
    Group g{};
    g.count = a.count;
    g.x = a.x;
    g.k = a.k;
    g.log2_blocksize = log2_exact(a.blocksize);
    g.log2_nested_span = g.log2_blocksize + log2_exact(a.nested_blocksize);
    if (a.fold_norm)
        g.norm = GroupNorm{a.norm.h, a.norm.delta, a.norm.delta_norm, a.norm.weight, a.norm_h_out, a.norm.y, a.norm.eps,
                           a.norm.unit_offset};
    int64_t total = 0;
    for (int i = 0; i < a.count; ++i) {
        const Nf4GroupMember& s = a.member[i];
        GroupMember& d = g.member[i];
        d.w = Nf4Weight{s.packed, s.absmax_codes, s.nested_code_map, s.nested_absmax, s.nested_offset, s.nf4_code_table};
        d.row0 = s.row0;
        d.m = s.m;
        d.y = s.y;
        d.y_stride = s.y_stride;
        d.slices = nf4_gemv_slices(s.matrix_rows, a.k);
        d.first_block = static_cast<int32_t>(total < 0x7FFFFFFF ? total : 0x7FFFFFFF);
        total += ceil_div(s.m, static_cast<int64_t>(kWarps / d.slices));
    }
    *blocks = total;
    return g;
}

template <int kDtype, int kBatch>
sloth_status launch_group(const char* fn, const Nf4GemvGroupArgs& a, cudaStream_t stream) {
    int64_t blocks = 0;
    const Group g = group_of(a, &blocks);
    const uint8_t* packed[kNf4GroupMax] = {a.member[0].packed, a.member[1].packed, a.member[2].packed};
    if (tiles_take<kDtype>(a.k, a.x, packed, a.count)) return launch_tiles_group<kDtype, kBatch>(fn, a, g, stream);
    const size_t fold_smem = a.fold_norm ? static_cast<size_t>(nf4_fold_smem_bytes(a)) : 0;
    if (!a.gated) {
        SLOTH_CHECK(require_one_launch(fn, blocks));
        SLOTH_KERNEL_LAUNCH(fn, "nf4_gemv_group_kernel",
                            launch_kernel_smem(a.fold_norm ? nf4_gemv_group_kernel<kDtype, kBatch, true> : nf4_gemv_group_kernel<kDtype, kBatch, false>,
                                               static_cast<unsigned>(blocks), kThreads, fold_smem, stream, g));
        return SLOTH_OK;
    }
    const int slices = g.member[0].slices;  // nf4_group_fits: both members alike, at most 4
    const int64_t pair_blocks = ceil_div(a.member[0].m, static_cast<int64_t>(kWarps / slices / 2));
    SLOTH_CHECK(require_one_launch(fn, pair_blocks));
    const unsigned grid = static_cast<unsigned>(pair_blocks);
    using Kernel = void (*)(Group, sloth_gate_activation, void*);
    const Kernel plain = slices == 1 ? nf4_gemv_gated_kernel<kDtype, kBatch, 1, false>
                       : slices == 2 ? nf4_gemv_gated_kernel<kDtype, kBatch, 2, false>
                                     : nf4_gemv_gated_kernel<kDtype, kBatch, 4, false>;
    const Kernel folded = slices == 1 ? nf4_gemv_gated_kernel<kDtype, kBatch, 1, true>
                        : slices == 2 ? nf4_gemv_gated_kernel<kDtype, kBatch, 2, true>
                                      : nf4_gemv_gated_kernel<kDtype, kBatch, 4, true>;
    const Kernel kernel = a.fold_norm ? folded : plain;
    SLOTH_KERNEL_LAUNCH(fn, "nf4_gemv_gated_kernel",
                        launch_kernel_smem(kernel, grid, kThreads, fold_smem, stream, g, a.activation, a.gated_out));
    return SLOTH_OK;
}

}  // namespace
}  // namespace sloth::cuda::nf4

namespace sloth::cuda {

// The entry points of one (dtype, batch) pair, instantiated by exactly one nf4_gemv_part_*.cu (nf4_gemv_parts.h).
template <int kDtype, int kBatch>
sloth_status nf4_gemv_launch(const char* fn, const Nf4GemvArgs& a, cudaStream_t stream) {
    return nf4::launch<kDtype, kBatch>(fn, a, stream);
}

template <int kDtype, int kBatch>
sloth_status nf4_gemv_group_launch(const char* fn, const Nf4GemvGroupArgs& a, cudaStream_t stream) {
    return nf4::launch_group<kDtype, kBatch>(fn, a, stream);
}

}  // namespace sloth::cuda

// Explicit instantiation of one (dtype, batch) pair's entry points, inside namespace sloth::cuda.
#define SLOTH_NF4_GEMV_INSTANTIATE(dtype, batch)                                                                    \
    template sloth_status nf4_gemv_launch<dtype, batch>(const char*, const Nf4GemvArgs&, cudaStream_t);            \
    template sloth_status nf4_gemv_group_launch<dtype, batch>(const char*, const Nf4GemvGroupArgs&, cudaStream_t);
