// NF4 double dequantization in ONE launch: nested absmax (code map x nested absmax, then + offset read through a
// pointer), the NF4 lookup and the scale, fused. Bit-identical to bitsandbytes: each product and the sum are
// separate round-to-nearest float operations (__fmul_rn/__fadd_rn forbid fused multiply-adds), and the final
// conversion rounds to nearest even.
//
// Work split: each thread owns 32 consecutive elements (16 packed bytes). Every supported blocksize is a power of
// two >= 32, so a thread's 32 elements share one absmax code and one nested absmax: one scale per thread.
// Bytes per element at blocksize 64: 0.5 (weight) + 1/64 (code) + ~0 (nested) + 2 (bf16 out): the kernel is
// bound by DRAM bandwidth, so the loads are 16 bytes wide, the weight streams past L1/L2 and stores stream out.
#include "cuda_common.cuh"
#include "ptx.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace sloth::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kElemsPerThread = 32;

template <int kDtype>  // sloth_dtype
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    if constexpr (kDtype == SLOTH_DTYPE_BF16) return ptx::pack_bf16x2(lo, hi);
    else return ptx::pack_f16x2(lo, hi);
}

template <int kDtype>
__device__ __forceinline__ void store_one(void* out, int64_t i, float v) {
    if constexpr (kDtype == SLOTH_DTYPE_F32) static_cast<float*>(out)[i] = v;
    else if constexpr (kDtype == SLOTH_DTYPE_BF16) static_cast<uint16_t*>(out)[i] = ptx::to_bf16_bits(v);
    else static_cast<uint16_t*>(out)[i] = ptx::to_f16_bits(v);
}

// kVector: packed and out are 16-byte aligned, so full 32-element chunks use 16-byte loads and stores.
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

    const int64_t i0 = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * kElemsPerThread;
    if (i0 >= n) return;

    const uint64_t keep = ptx::policy_evict_last();
    const uint32_t code = ptx::load_u8_keep(absmax_codes + (i0 >> log2_blocksize), keep);
    const float scale = __fadd_rn(__fmul_rn(__ldg(code_map + code), __ldg(nested_absmax + (i0 >> log2_nested_span))),
                                  __ldg(nested_offset));

    if (kVector && i0 + kElemsPerThread <= n) {
        const uint4 q = ptx::load_stream_v4(packed + (i0 >> 1), ptx::policy_evict_first());
        const uint32_t words[4] = {q.x, q.y, q.z, q.w};
        if constexpr (kDtype == SLOTH_DTYPE_F32) {
            float* o = static_cast<float*>(out) + i0;
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                float v[8];
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    const uint32_t byte = (words[w] >> (8 * k)) & 0xFFu;
                    v[2 * k] = __fmul_rn(s_nf4[byte >> 4], scale);
                    v[2 * k + 1] = __fmul_rn(s_nf4[byte & 0xFu], scale);
                }
                ptx::store_stream_v4(o + 8 * w, __float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]),
                                     __float_as_uint(v[3]));
                ptx::store_stream_v4(o + 8 * w + 4, __float_as_uint(v[4]), __float_as_uint(v[5]),
                                     __float_as_uint(v[6]), __float_as_uint(v[7]));
            }
        } else {
            uint16_t* o = static_cast<uint16_t*>(out) + i0;
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                uint32_t r[4];
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    const uint32_t byte = (words[w] >> (8 * k)) & 0xFFu;
                    // High nibble = the even element = the lower address = the low half of the pair.
                    r[k] = pack2<kDtype>(__fmul_rn(s_nf4[byte >> 4], scale), __fmul_rn(s_nf4[byte & 0xFu], scale));
                }
                ptx::store_stream_v4(o + 8 * w, r[0], r[1], r[2], r[3]);
            }
        }
        return;
    }
    // Tail (n not a multiple of 32) or unaligned views: element by element.
    const int64_t end = (i0 + kElemsPerThread < n) ? i0 + kElemsPerThread : n;
    for (int64_t i = i0; i < end; ++i) {
        const uint32_t byte = packed[i >> 1];
        const uint32_t nibble = (i & 1) ? (byte & 0xFu) : (byte >> 4);
        store_one<kDtype>(out, i, __fmul_rn(s_nf4[nibble], scale));
    }
}

int log2_of(int64_t v) {
    int l = 0;
    while ((int64_t{1} << l) < v) ++l;
    return l;
}

template <int kDtype>
sloth_status launch(const char* fn, const Nf4DequantArgs& a, cudaStream_t stream) {
    const int64_t chunks = (a.n + kElemsPerThread - 1) / kElemsPerThread;
    const int64_t blocks = (chunks + kThreads - 1) / kThreads;
    if (blocks > 0x7FFFFFFF) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: n = %lld is too large for one launch", fn, (long long)a.n);
    const bool aligned = (reinterpret_cast<uintptr_t>(a.packed) % 16 == 0) && (reinterpret_cast<uintptr_t>(a.out) % 16 == 0);
    const int lb = log2_of(a.blocksize);
    const int ln = lb + log2_of(a.nested_blocksize);
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
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    const auto s = static_cast<cudaStream_t>(stream);
    switch (a.out_dtype) {
        case SLOTH_DTYPE_BF16: return launch<SLOTH_DTYPE_BF16>(fn, a, s);
        case SLOTH_DTYPE_F16: return launch<SLOTH_DTYPE_F16>(fn, a, s);
        default: return launch<SLOTH_DTYPE_F32>(fn, a, s);
    }
}

}  // namespace sloth::cuda
