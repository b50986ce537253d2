// NF4 quantization with double-quantized absmax on the GPU, bit-identical to the CPU twin (cpu/nf4_cpu.cpp) and so
// to bitsandbytes' quantize_4bit(compress_statistics=True, quant_type="nf4"). Three launches on the caller's stream,
// no allocation, no sync:
//   1. one warp per block of `blocksize` values: absmax (max |x|, exact in any order), then each lane packs pairs
//      with x * (1 / absmax) through the NF4 decision tree (the reciprocal rounded once, as bitsandbytes does);
//   2. ONE thread block computes the mean of absmax in double in the order the header fixes (1024 lane sums, then
//      the lane sums in lane order), so the offset has the same bits as the CPU's;
//   3. one warp per nested block: max |absmax - offset|, then each absmax's 8-bit code by bitsandbytes' binary
//      search with midpoint rounding.
// Every float operation is a separate round-to-nearest intrinsic (__fmul_rn, __fsub_rn, __frcp_rn, ...), matching
// the host's separate float operations (built with -ffp-contract=off); CMake also passes --fmad=false.
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "../src/nf4_codes.h"

namespace sloth::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMeanThreads = static_cast<int>(kNf4MeanLanes);  // one thread per summation lane
static_assert(kMeanThreads == 1024, "the mean kernel runs one 1024-thread block");

__device__ __forceinline__ float warp_max(float m) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, off));
    return m;
}

// Launch 1: warp w of the grid owns quantization block b = w (all lanes of a warp share b, so a warp returns as one).
template <int kDtype>
__global__ void __launch_bounds__(kThreads) nf4_quantize_blocks_kernel(const void* __restrict__ src, int64_t n,
                                                                        int64_t blocks, int64_t blocksize,
                                                                        float* __restrict__ absmax,
                                                                        uint8_t* __restrict__ packed) {
    const int lane = threadIdx.x & 31;
    const int64_t b = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
    if (b >= blocks) return;
    const int64_t start = b * blocksize;
    const int64_t end = (start + blocksize < n) ? start + blocksize : n;
    float m = 0.0f;
    for (int64_t i = start + lane; i < end; i += 32) m = fmaxf(m, fabsf(load_f32<kDtype>(src, i)));
    m = warp_max(m);
    if (lane == 0) absmax[b] = m;
    const float inv = __frcp_rn(m);  // 1 / 0 = inf: an all-zero block gives NaN products, code 0, as bitsandbytes
    // start is even (blocksize >= 32), so pair k = (i, i + 1) fills byte i / 2: element i in the high nibble.
    for (int64_t i = start + 2 * lane; i < end; i += 64) {
        const uint32_t hi = nf4_code(__fmul_rn(load_f32<kDtype>(src, i), inv));
        const float x_lo = (i + 1 < end) ? load_f32<kDtype>(src, i + 1) : 0.0f;  // bitsandbytes pads with 0
        const uint32_t lo = nf4_code(__fmul_rn(x_lo, inv));
        packed[i >> 1] = static_cast<uint8_t>((hi << 4) | lo);
    }
}

// Launch 2: one block; thread t sums absmax[t], absmax[t + 1024], ... in double, thread 0 adds the lane sums in order.
__global__ void __launch_bounds__(kMeanThreads) nf4_quantize_mean_kernel(const float* __restrict__ absmax,
                                                                          int64_t blocks,
                                                                          float* __restrict__ offset) {
    __shared__ double s_lane[kMeanThreads];
    double s = 0.0;
    for (int64_t b = threadIdx.x; b < blocks; b += kMeanThreads) s = __dadd_rn(s, static_cast<double>(absmax[b]));
    s_lane[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double sum = 0.0;
        for (int t = 0; t < kMeanThreads; ++t) sum = __dadd_rn(sum, s_lane[t]);
        *offset = __double2float_rn(__ddiv_rn(sum, static_cast<double>(blocks)));
    }
}

// Launch 3: warp w owns nested block c = w: its absmax (of absmax - offset) and the 8-bit codes of its blocks.
__global__ void __launch_bounds__(kThreads) nf4_quantize_nested_kernel(
    const float* __restrict__ absmax, int64_t blocks, int64_t nested_blocksize, int64_t nested_blocks,
    const float* __restrict__ offset_ptr, const float* __restrict__ code_map, float* __restrict__ nested_absmax,
    uint8_t* __restrict__ codes) {
    __shared__ float s_code[256];
    for (int k = static_cast<int>(threadIdx.x); k < 256; k += kThreads) s_code[k] = code_map[k];
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int64_t c = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
    if (c >= nested_blocks) return;
    const float offset = *offset_ptr;  // written by launch 2 on the same stream
    const int64_t start = c * nested_blocksize;
    const int64_t end = (start + nested_blocksize < blocks) ? start + nested_blocksize : blocks;
    float m = 0.0f;
    for (int64_t b = start + lane; b < end; b += 32) m = fmaxf(m, fabsf(__fsub_rn(absmax[b], offset)));
    m = warp_max(m);
    if (lane == 0) nested_absmax[c] = m;
    const float inv = __frcp_rn(m);
    for (int64_t b = start + lane; b < end; b += 32) codes[b] = dynamic_code(s_code, __fmul_rn(__fsub_rn(absmax[b], offset), inv));
}

template <int kDtype>
sloth_status launch(const char* fn, const Nf4QuantArgs& a, cudaStream_t stream) {
    const int64_t blocks = ceil_div(a.n, a.blocksize);
    const int64_t nested_blocks = ceil_div(blocks, a.nested_blocksize);
    const int64_t grid1 = ceil_div(blocks, kWarps);
    if (grid1 > 0x7FFFFFFF) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: n = %lld is too large for one launch", fn, (long long)a.n);
    nf4_quantize_blocks_kernel<kDtype><<<dim3(static_cast<unsigned>(grid1)), kThreads, 0, stream>>>(
        a.src, a.n, blocks, a.blocksize, a.absmax, a.packed);
    SLOTH_LAUNCH_CHECK(fn, "nf4_quantize_blocks_kernel");
    nf4_quantize_mean_kernel<<<1, kMeanThreads, 0, stream>>>(a.absmax, blocks, a.nested_offset);
    SLOTH_LAUNCH_CHECK(fn, "nf4_quantize_mean_kernel");
    nf4_quantize_nested_kernel<<<dim3(static_cast<unsigned>(ceil_div(nested_blocks, kWarps))), kThreads, 0, stream>>>(
        a.absmax, blocks, a.nested_blocksize, nested_blocks, a.nested_offset, a.nested_code_map, a.nested_absmax,
        a.absmax_codes);
    SLOTH_LAUNCH_CHECK(fn, "nf4_quantize_nested_kernel");
    return SLOTH_OK;
}

}  // namespace

sloth_status nf4_quantize(const char* fn, const Nf4QuantArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.src_dtype,
                            [&](auto dt, cudaStream_t s) { return launch<decltype(dt)::value>(fn, a, s); });
}

}  // namespace sloth::cuda
