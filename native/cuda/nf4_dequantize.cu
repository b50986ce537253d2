// NF4 double dequantization in ONE launch: nested absmax (code map x nested absmax, then + offset read through a
// pointer), the NF4 lookup and the scale, fused. Bit-identical to bitsandbytes: each product and the sum are
// separate round-to-nearest float operations (__fmul_rn/__fadd_rn forbid fused multiply-adds), and the final
// conversion rounds to nearest even.
//
// Work split: a warp owns a tile of 1024 consecutive elements. For word j (0..3) lane l reads the 4-byte packed
// word holding elements tile + 256 j + 8 l .. +7 and writes those 8 outputs as one 16-byte store, so each warp-wide
// store instruction covers one contiguous 512-byte span (a first version gave each thread 32 consecutive elements:
// its 16-byte stores strode 64 bytes across the warp and the kernel reached only 55% of the copy bandwidth).
// Every supported blocksize is a power of two >= 32, so a word's 8 elements share one absmax and one nested absmax.
// Bytes per element at blocksize 64: 0.5 (weight) + 1/64 (code) + ~0 (nested) + 2 (bf16 out): bound by DRAM, so
// the weight streams past L1 with an evict-first L2 policy, the small tables stay in L2, and stores stream out.
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ptx.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace sloth::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWordsPerLane = 4;                       // independent 4-byte loads in flight per thread
constexpr int kWarpTile = 32 * kWordsPerLane * 8;      // 1024 elements per warp
constexpr int kBlockTile = kWarpTile * (kThreads / 32);  // 8192 elements per thread block

__device__ __forceinline__ float block_scale(const uint8_t* __restrict__ absmax_codes, const float* __restrict__ code_map,
                                             const float* __restrict__ nested_absmax, float offset, int64_t i,
                                             int log2_blocksize, int log2_nested_span, uint64_t keep) {
    const uint32_t code = ptx::load_u8_keep(absmax_codes + (i >> log2_blocksize), keep);
    return __fadd_rn(__fmul_rn(__ldg(code_map + code), __ldg(nested_absmax + (i >> log2_nested_span))), offset);
}

// kVector: packed is 4-byte and out 16-byte aligned, so full tiles use word loads and 16-byte stores.
template <int kDtype, bool kVector>
__global__ void __launch_bounds__(kThreads) nf4_dequantize_kernel(
    const uint8_t* __restrict__ packed, const uint8_t* __restrict__ absmax_codes,
    const float* __restrict__ code_map, const float* __restrict__ nested_absmax,
    const float* __restrict__ nested_offset, const float* __restrict__ nf4_table, int64_t n, int log2_blocksize,
    int log2_nested_span, void* __restrict__ out) {
    // 16 floats in 16 distinct banks: a warp's table lookups never conflict, whatever the nibbles.
    __shared__ float s_nf4[16];
    if (threadIdx.x < 16) s_nf4[threadIdx.x] = nf4_table[threadIdx.x];
    __syncthreads();

    const int lane = threadIdx.x & 31;
    const int64_t tile = static_cast<int64_t>(blockIdx.x) * kBlockTile + (threadIdx.x >> 5) * kWarpTile;
    if (tile >= n) return;
    const uint64_t keep = ptx::policy_evict_last();
    const float offset = __ldg(nested_offset);

    if (kVector && tile + kWarpTile <= n) {
        const uint64_t stream = ptx::policy_evict_first();
        uint32_t words[kWordsPerLane];
        float scales[kWordsPerLane];
#pragma unroll
        for (int j = 0; j < kWordsPerLane; ++j)  // all loads issued before any use
            words[j] = ptx::load_stream_u32(packed + (tile >> 1) + j * 128 + 4 * lane, stream);
#pragma unroll
        for (int j = 0; j < kWordsPerLane; ++j)
            scales[j] = block_scale(absmax_codes, code_map, nested_absmax, offset, tile + j * 256 + 8 * lane,
                                    log2_blocksize, log2_nested_span, keep);
#pragma unroll
        for (int j = 0; j < kWordsPerLane; ++j) {
            const int64_t e0 = tile + j * 256 + 8 * lane;
            float v[8];
#pragma unroll
            for (int k = 0; k < 4; ++k) {  // byte k: high nibble = element 2k, low nibble = element 2k + 1
                const uint32_t byte = (words[j] >> (8 * k)) & 0xFFu;
                v[2 * k] = __fmul_rn(s_nf4[byte >> 4], scales[j]);
                v[2 * k + 1] = __fmul_rn(s_nf4[byte & 0xFu], scales[j]);
            }
            if constexpr (kDtype == SLOTH_DTYPE_F32) {
                float* o = static_cast<float*>(out) + e0;
                ptx::store_stream_v4(o, __float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]), __float_as_uint(v[3]));
                ptx::store_stream_v4(o + 4, __float_as_uint(v[4]), __float_as_uint(v[5]), __float_as_uint(v[6]), __float_as_uint(v[7]));
            } else {
                ptx::store_stream_v4(static_cast<uint16_t*>(out) + e0, pack2<kDtype>(v[0], v[1]), pack2<kDtype>(v[2], v[3]),
                                     pack2<kDtype>(v[4], v[5]), pack2<kDtype>(v[6], v[7]));
            }
        }
        return;
    }
    // The last partial tile, or unaligned views: the warp's lanes stride over the tile element by element.
    const int64_t end = (tile + kWarpTile < n) ? tile + kWarpTile : n;
    for (int64_t i = tile + lane; i < end; i += 32) {
        const uint32_t byte = packed[i >> 1];
        const uint32_t nibble = (i & 1) ? (byte & 0xFu) : (byte >> 4);
        const float scale = block_scale(absmax_codes, code_map, nested_absmax, offset, i, log2_blocksize, log2_nested_span, keep);
        store_f32<kDtype>(out, i, __fmul_rn(s_nf4[nibble], scale));
    }
}

template <int kDtype>
sloth_status launch(const char* fn, const Nf4DequantArgs& a, cudaStream_t stream) {
    const int64_t blocks = (a.n + kBlockTile - 1) / kBlockTile;
    if (blocks > 0x7FFFFFFF) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: n = %lld is too large for one launch", fn, (long long)a.n);
    const bool aligned = (reinterpret_cast<uintptr_t>(a.packed) % 4 == 0) && (reinterpret_cast<uintptr_t>(a.out) % 16 == 0);
    const int lb = log2_exact(a.blocksize);
    const int ln = lb + log2_exact(a.nested_blocksize);
    const dim3 grid(static_cast<unsigned>(blocks));
    if (aligned)
        nf4_dequantize_kernel<kDtype, true><<<grid, kThreads, 0, stream>>>(
            a.packed, a.absmax_codes, a.nested_code_map, a.nested_absmax, a.nested_offset, a.nf4_code_table, a.n, lb, ln, a.out);
    else
        nf4_dequantize_kernel<kDtype, false><<<grid, kThreads, 0, stream>>>(
            a.packed, a.absmax_codes, a.nested_code_map, a.nested_absmax, a.nested_offset, a.nf4_code_table, a.n, lb, ln, a.out);
    SLOTH_LAUNCH_CHECK(fn, "nf4_dequantize_kernel");
    return SLOTH_OK;
}

}  // namespace

sloth_status nf4_dequantize(const char* fn, const Nf4DequantArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.out_dtype,
                            [&](auto dt, cudaStream_t s) { return launch<decltype(dt)::value>(fn, a, s); });
}

}  // namespace sloth::cuda
