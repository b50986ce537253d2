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
// Not measured yet on a GPU (no nvcc on the development machine): the constants below are a first choice.
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ptx.cuh"

namespace sloth::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kTargetWarps = 4096;  // ~31 per SM on an H100: enough loads in flight to cover DRAM latency

// Eight consecutive activations x[i .. i + 8) as float32 (i a multiple of 8, the address 16-byte aligned).
template <int kDtype>
__device__ __forceinline__ void load_x8(const void* x, int64_t i, float (&v)[8]) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) {
        const float* p = static_cast<const float*>(x) + i;
        const uint4 a = ptx::load_cached_v4(p), b = ptx::load_cached_v4(p + 4);
        v[0] = __uint_as_float(a.x), v[1] = __uint_as_float(a.y), v[2] = __uint_as_float(a.z), v[3] = __uint_as_float(a.w);
        v[4] = __uint_as_float(b.x), v[5] = __uint_as_float(b.y), v[6] = __uint_as_float(b.z), v[7] = __uint_as_float(b.w);
    } else {
        const uint4 q = ptx::load_cached_v4(static_cast<const uint16_t*>(x) + i);
        const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {  // little-endian: the lower half is the earlier element
            if constexpr (kDtype == SLOTH_DTYPE_BF16) {
                v[2 * k] = __uint_as_float(words[k] << 16);
                v[2 * k + 1] = __uint_as_float(words[k] & 0xFFFF0000u);
            } else {
                v[2 * k] = f16_bits_to_f32(static_cast<uint16_t>(words[k] & 0xFFFFu));
                v[2 * k + 1] = f16_bits_to_f32(static_cast<uint16_t>(words[k] >> 16));
            }
        }
    }
}

// The eight weights of one packed 4-byte word (byte j: element 2j in the high nibble, 2j + 1 in the low one), each
// nf4 × scale rounded to the dtype.
template <int kDtype>
__device__ __forceinline__ void decode8(uint32_t word, float scale, const float* s_nf4, float (&w)[8]) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const uint32_t byte = (word >> (8 * j)) & 0xFFu;
        w[2 * j] = round_to<kDtype>(__fmul_rn(s_nf4[byte >> 4], scale));
        w[2 * j + 1] = round_to<kDtype>(__fmul_rn(s_nf4[byte & 0xFu], scale));
    }
}

// One row of W per warp; a row's chunks (32 weights = 16 packed bytes) may be split over kSlices warps of the block
// (split-K) so that small matrices (k/v projections, a 2048-row down projection) still put thousands of warps to work:
// at batch 1 the kernel is latency-bound, and the number of 16-byte loads in flight is what sets its speed. Each
// warp reduces its slice with a shuffle butterfly, the block adds the slices in slice order (a fixed order: a call
// always gives the same bits). The nested code map sits in shared memory, so a block scale costs one byte load.
template <int kDtype, int kBatch, bool kVector, int kSlices>
__global__ void __launch_bounds__(kThreads) nf4_gemv_kernel(
    const void* __restrict__ x, const uint8_t* __restrict__ packed, const uint8_t* __restrict__ absmax_codes,
    const float* __restrict__ code_map, const float* __restrict__ nested_absmax,
    const float* __restrict__ nested_offset, const float* __restrict__ nf4_table, int64_t k, int64_t m,
    int log2_blocksize, int log2_nested_span, void* __restrict__ y) {
    constexpr int kRowsPerBlock = kWarps / kSlices;
    __shared__ float s_nf4[16];
    __shared__ float s_map[256];
    __shared__ float s_part[kWarps][kBatch];
    static_assert(kThreads == 256, "one thread per code-map entry");

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t row_raw = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp / kSlices;
    const int64_t row = row_raw < m ? row_raw : m - 1;  // past the end: computed, not written (a barrier follows)
    const int slice = warp % kSlices;
    const uint64_t keep = ptx::policy_evict_last();

    float acc[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) acc[b] = 0.0f;

    if constexpr (kVector) {
        const uint64_t stream = ptx::policy_evict_first();
        const int64_t chunks = k >> 5;
        const int64_t per = (chunks + kSlices - 1) / kSlices;
        const int64_t q0 = slice * per, q1 = q0 + per < chunks ? q0 + per : chunks;
        // A lane's first two chunks: their weight bytes, block codes and nested absmax are requested before the tables
        // are staged in shared memory, so the DRAM latency of the weights overlaps the table loads and the barrier.
        const int64_t qa = q0 + lane, qb = qa + 32;
        uint4 wa = make_uint4(0, 0, 0, 0), wb = make_uint4(0, 0, 0, 0);
        uint32_t ca = 0, cb = 0;
        float na = 0.0f, nb = 0.0f;
        if (qa < q1) {
            const int64_t i = row * k + (qa << 5);
            wa = ptx::load_stream_v4(packed + (i >> 1), stream);
            ca = ptx::load_u8_keep(absmax_codes + (i >> log2_blocksize), keep);
            na = __ldg(nested_absmax + (i >> log2_nested_span));
        }
        if (qb < q1) {
            const int64_t i = row * k + (qb << 5);
            wb = ptx::load_stream_v4(packed + (i >> 1), stream);
            cb = ptx::load_u8_keep(absmax_codes + (i >> log2_blocksize), keep);
            nb = __ldg(nested_absmax + (i >> log2_nested_span));
        }
        if (threadIdx.x < 16) s_nf4[threadIdx.x] = nf4_table[threadIdx.x];
        s_map[threadIdx.x] = code_map[threadIdx.x];
        const float offset = __ldg(nested_offset);
        __syncthreads();
        auto consume = [&](uint4 words, uint32_t code, float nested, int64_t c0) {
            const float scale = __fadd_rn(__fmul_rn(s_map[code], nested), offset);
#pragma unroll
            for (int s4 = 0; s4 < 4; ++s4) {
                const uint32_t word = s4 == 0 ? words.x : s4 == 1 ? words.y : s4 == 2 ? words.z : words.w;
                float w[8];
                decode8<kDtype>(word, scale, s_nf4, w);
#pragma unroll
                for (int b = 0; b < kBatch; ++b) {
                    float xv[8];
                    load_x8<kDtype>(x, b * k + c0 + 8 * s4, xv);
#pragma unroll
                    for (int e = 0; e < 8; ++e) acc[b] = __fmaf_rn(xv[e], w[e], acc[b]);
                }
            }
        };
        if (qa < q1) consume(wa, ca, na, qa << 5);
        if (qb < q1) consume(wb, cb, nb, qb << 5);
        for (int64_t q = qb + 32; q < q1; q += 32) {  // slices longer than 64 chunks (rare: see the launch)
            const int64_t i = row * k + (q << 5);
            consume(ptx::load_stream_v4(packed + (i >> 1), stream), ptx::load_u8_keep(absmax_codes + (i >> log2_blocksize), keep),
                    __ldg(nested_absmax + (i >> log2_nested_span)), q << 5);
        }
    } else {
        if (threadIdx.x < 16) s_nf4[threadIdx.x] = nf4_table[threadIdx.x];
        s_map[threadIdx.x] = code_map[threadIdx.x];
        const float offset = __ldg(nested_offset);
        __syncthreads();
        const int64_t per = (k + kSlices - 1) / kSlices;
        const int64_t c1 = (slice + 1) * per < k ? (slice + 1) * per : k;
        for (int64_t c = slice * per + lane; c < c1; c += 32) {
            const int64_t i = row * k + c;
            const uint32_t byte = packed[i >> 1];
            const uint32_t nibble = (i & 1) ? (byte & 0xFu) : (byte >> 4);
            const uint32_t code = ptx::load_u8_keep(absmax_codes + (i >> log2_blocksize), keep);
            const float scale = __fadd_rn(__fmul_rn(s_map[code], __ldg(nested_absmax + (i >> log2_nested_span))), offset);
            const float w = round_to<kDtype>(__fmul_rn(s_nf4[nibble], scale));
#pragma unroll
            for (int b = 0; b < kBatch; ++b) acc[b] = __fmaf_rn(load_f32<kDtype>(x, b * k + c), w, acc[b]);
        }
    }

#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
        float v = acc[b];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xFFFFFFFFu, v, off));
        if (lane == 0) s_part[warp][b] = v;
    }
    __syncthreads();
    if (threadIdx.x < kRowsPerBlock * kBatch) {
        const int r = static_cast<int>(threadIdx.x) / kBatch, b = static_cast<int>(threadIdx.x) % kBatch;
        const int64_t out_row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + r;
        float v = s_part[r * kSlices][b];
#pragma unroll
        for (int s2 = 1; s2 < kSlices; ++s2) v = __fadd_rn(v, s_part[r * kSlices + s2][b]);
        if (out_row < m) store_f32<kDtype>(y, b * m + out_row, v);
    }
}

template <int kDtype, int kBatch, int kSlices>
sloth_status launch_sliced(const char* fn, const Nf4GemvArgs& a, bool vector, int lb, int ln, cudaStream_t stream) {
    constexpr int kRowsPerBlock = kWarps / kSlices;
    const int64_t blocks = ceil_div(a.m, static_cast<int64_t>(kRowsPerBlock));
    SLOTH_CHECK(require_one_launch(fn, blocks));
    const dim3 grid(static_cast<unsigned>(blocks));
    if (vector)
        nf4_gemv_kernel<kDtype, kBatch, true, kSlices><<<grid, kThreads, 0, stream>>>(
            a.x, a.packed, a.absmax_codes, a.nested_code_map, a.nested_absmax, a.nested_offset, a.nf4_code_table, a.k,
            a.m, lb, ln, a.y);
    else
        nf4_gemv_kernel<kDtype, kBatch, false, kSlices><<<grid, kThreads, 0, stream>>>(
            a.x, a.packed, a.absmax_codes, a.nested_code_map, a.nested_absmax, a.nested_offset, a.nf4_code_table, a.k,
            a.m, lb, ln, a.y);
    SLOTH_LAUNCH_CHECK(fn, "nf4_gemv_kernel");
    return SLOTH_OK;
}

template <int kDtype, int kBatch>
sloth_status launch(const char* fn, const Nf4GemvArgs& a, cudaStream_t stream) {
    const bool vector = a.k % 32 == 0 && reinterpret_cast<uintptr_t>(a.packed) % 16 == 0 &&
                        reinterpret_cast<uintptr_t>(a.x) % 16 == 0;
    const int lb = log2_exact(a.blocksize);
    const int ln = lb + log2_exact(a.nested_blocksize);
    // Split rows over more warps while the grid is small or a row has more than 64 chunks (two per lane, all
    // requested up front), keeping at least 8 chunks (256 weights) per slice.
    const int64_t chunks = ceil_div(a.k, static_cast<int64_t>(32));
    int slices = 1;
    while (slices < kWarps && (a.m * slices < kTargetWarps || chunks > 64 * slices) && chunks / (2 * slices) >= 8) slices *= 2;
    switch (slices) {
        case 1: return launch_sliced<kDtype, kBatch, 1>(fn, a, vector, lb, ln, stream);
        case 2: return launch_sliced<kDtype, kBatch, 2>(fn, a, vector, lb, ln, stream);
        case 4: return launch_sliced<kDtype, kBatch, 4>(fn, a, vector, lb, ln, stream);
        default: return launch_sliced<kDtype, kBatch, 8>(fn, a, vector, lb, ln, stream);
    }
}

// The batch as a compile-time constant (the export checked 1 <= batch <= SLOTH_NF4_GEMV_MAX_BATCH = 8).
template <int kDtype>
sloth_status launch_for_batch(const char* fn, const Nf4GemvArgs& a, cudaStream_t s) {
    static_assert(SLOTH_NF4_GEMV_MAX_BATCH == 8, "one case per batch size below");
    switch (a.batch) {
        case 1: return launch<kDtype, 1>(fn, a, s);
        case 2: return launch<kDtype, 2>(fn, a, s);
        case 3: return launch<kDtype, 3>(fn, a, s);
        case 4: return launch<kDtype, 4>(fn, a, s);
        case 5: return launch<kDtype, 5>(fn, a, s);
        case 6: return launch<kDtype, 6>(fn, a, s);
        case 7: return launch<kDtype, 7>(fn, a, s);
        case 8: return launch<kDtype, 8>(fn, a, s);
        default: return fail(SLOTH_ERROR_INTERNAL, "%s: batch = %lld passed validation", fn, static_cast<long long>(a.batch));
    }
}

}  // namespace

sloth_status nf4_gemv(const char* fn, const Nf4GemvArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) { return launch_for_batch<decltype(dt)::value>(fn, a, s); });
}

}  // namespace sloth::cuda
