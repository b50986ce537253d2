// Soft-capped attention probabilities (Gemma 2), one block of query rows between the attention's matmuls: the
// element-wise soft-cap with the eager expression's dtype roundings, the mask, a float32 softmax over each row and, in
// backward, the softmax's and the soft-cap's gradient (slothsharp.h gives the formulas). It replaces about eight
// TorchSharp passes per block in forward and twelve in backward over [B, H, rows, cols] tensors.
// Layout: one thread block of kThreads (128) threads per row, a grid-stride loop over the rows (64-bit indices). A row
// is read in chunks of kChunk = kThreads * kPer (1024) columns, thread x holding columns x, x + 128, ... of a chunk in
// registers (consecutive threads read consecutive elements). Rows of up to one chunk (every row of Gemma-2's
// 1024-token blocks) are read from global memory once and kept in registers through the reductions; longer rows (any
// length; 16,384 columns is 16 chunks) are read again, and their tanh and exp recomputed, in each pass, with the same
// bits. Block reductions (warp shuffles, then the kWarps partials from shared memory, summed by every thread in the
// same order) give the row's max, its sum of exponentials and, in backward, sum(dp * p). A block per row, not a warp:
// the rows are long (hundreds to thousands of keys) and a row's loads then spread over four warps.
// Roundings: every product and sum is a separate round-to-nearest float32 operation (__fmul_rn etc.; the library is
// also built with --fmad=false), each PyTorch op on dtype tensors rounds to the dtype (round_to), tanhf and expf are
// the IEEE-accurate functions (not tanh.approx / __expf), the softmax divides by the sum (__fdiv_rn). "/ cap" is
// "* (1 / cap)", with the reciprocal rounded to float32 once on the host: what PyTorch's CUDA division by a scalar
// does (the CPU twin divides, as PyTorch's CPU kernel does).
// A row with no allowed key: its max is -inf, -inf - -inf is NaN, and the row's outputs are NaN (the eager path's).
// No allocation (kWarps floats of static shared memory), no host sync; the stream orders it.
#include "cuda_common.cuh"
#include "dtype.cuh"

#include <math_constants.h>

namespace sloth::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kPer = 8;  // columns per thread per chunk
constexpr int64_t kChunk = int64_t{kThreads} * kPer;

// What every thread of a row needs: the row's offset, its mask row (NULL: every key) and the constants.
struct Row {
    int64_t base;  // first element of the row in scores / grad_probs / probs / grad_scores
    const uint8_t* mask;
    int64_t cols;
};

__device__ __forceinline__ Row row_at(const SoftcapSoftmaxArgs& a, int64_t r) {
    const uint8_t* mask = nullptr;
    if (a.allowed) {
        const int64_t i = r % a.rows, bh = r / a.rows;
        mask = a.allowed + (bh / a.heads) * a.mask_batch_stride + (bh % a.heads) * a.mask_head_stride +
               i * a.mask_row_stride;
    }
    return Row{r * a.cols, mask, a.cols};
}

// Column of value k of this thread in chunk c.
__device__ __forceinline__ int64_t column(int64_t c, int k) {
    return c * kChunk + int64_t{k} * kThreads + threadIdx.x;
}

// round(tanh(round(round(s0 * scale) * inv_cap))): the soft-cap's tanh as the eager expression stores it.
template <int kDtype>
__device__ __forceinline__ float capped_tanh(float s0, float scale, float inv_cap) {
    const float s1 = round_to<kDtype>(__fmul_rn(s0, scale));
    const float s2 = round_to<kDtype>(__fmul_rn(s1, inv_cap));
    return round_to<kDtype>(tanhf(s2));
}

// This thread's values of chunk c: t (the tanh, 0 past the row) and s (the masked, capped score s3; -inf where masked
// or past the row).
template <int kDtype>
__device__ __forceinline__ void load_chunk(const SoftcapSoftmaxArgs& a, const Row& row, float inv_cap, int64_t c,
                                           float (&t)[kPer], float (&s)[kPer]) {
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
        const int64_t j = column(c, k);
        t[k] = 0.0f;
        s[k] = -CUDART_INF_F;
        if (j < row.cols) {
            t[k] = capped_tanh<kDtype>(load_f32<kDtype>(a.scores, row.base + j), a.scale, inv_cap);
            if (!row.mask || row.mask[j] != 0) s[k] = round_to<kDtype>(__fmul_rn(t[k], a.cap));
        }
    }
}

// s = exp(s - max) in place (0 past the row, so padding never enters a sum).
__device__ __forceinline__ void exponentials(const Row& row, int64_t c, float m, float (&s)[kPer]) {
#pragma unroll
    for (int k = 0; k < kPer; ++k) s[k] = column(c, k) < row.cols ? expf(__fsub_rn(s[k], m)) : 0.0f;
}

struct MaxOp {
    __device__ float operator()(float x, float y) const { return fmaxf(x, y); }
};
struct SumOp {
    __device__ float operator()(float x, float y) const { return __fadd_rn(x, y); }
};

// The block's reduction of v: every thread gets the same value (the per-warp partials are combined in one order).
// The trailing barrier lets the next reduction reuse the shared slots.
template <class Op>
__device__ __forceinline__ float block_reduce(float v, float (&partial)[kWarps], Op op) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xFFFFFFFFu, v, off));
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    float r = partial[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) r = op(r, partial[w]);
    __syncthreads();
    return r;
}

// Passes 1 and 2 of both directions: the row's max of s3 and sum of exp(s3 - max). On return, for a row of one chunk,
// t and s hold chunk 0's tanh and exponentials.
template <int kDtype>
__device__ __forceinline__ void row_max_and_sum(const SoftcapSoftmaxArgs& a, const Row& row, float inv_cap,
                                                int64_t chunks, float (&t)[kPer], float (&s)[kPer],
                                                float (&partial)[kWarps], float& m, float& sum) {
    m = -CUDART_INF_F;
    for (int64_t c = 0; c < chunks; ++c) {
        load_chunk<kDtype>(a, row, inv_cap, c, t, s);
#pragma unroll
        for (int k = 0; k < kPer; ++k) m = fmaxf(m, s[k]);
    }
    m = block_reduce(m, partial, MaxOp{});
    sum = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) {
        if (chunks > 1) load_chunk<kDtype>(a, row, inv_cap, c, t, s);
        exponentials(row, c, m, s);
#pragma unroll
        for (int k = 0; k < kPer; ++k) sum = __fadd_rn(sum, s[k]);
    }
    sum = block_reduce(sum, partial, SumOp{});
}

template <int kDtype>
__global__ void __launch_bounds__(kThreads) softcap_softmax_forward_kernel(SoftcapSoftmaxArgs a, float inv_cap) {
    __shared__ float partial[kWarps];
    const int64_t total = a.batch * a.heads * a.rows;
    const int64_t chunks = (a.cols + kChunk - 1) / kChunk;
    for (int64_t r = blockIdx.x; r < total; r += gridDim.x) {
        const Row row = row_at(a, r);
        float t[kPer], s[kPer], m, sum;
        row_max_and_sum<kDtype>(a, row, inv_cap, chunks, t, s, partial, m, sum);
        for (int64_t c = 0; c < chunks; ++c) {
            if (chunks > 1) {
                load_chunk<kDtype>(a, row, inv_cap, c, t, s);
                exponentials(row, c, m, s);
            }
#pragma unroll
            for (int k = 0; k < kPer; ++k) {
                const int64_t j = column(c, k);
                if (j < row.cols) store_f32<kDtype>(a.probs, row.base + j, __fdiv_rn(s[k], sum));
            }
        }
    }
}

template <int kDtype>
__global__ void __launch_bounds__(kThreads) softcap_softmax_backward_kernel(SoftcapSoftmaxArgs a, float inv_cap) {
    __shared__ float partial[kWarps];
    const int64_t total = a.batch * a.heads * a.rows;
    const int64_t chunks = (a.cols + kChunk - 1) / kChunk;
    for (int64_t r = blockIdx.x; r < total; r += gridDim.x) {
        const Row row = row_at(a, r);
        float t[kPer], s[kPer], dp[kPer], m, sum;
        row_max_and_sum<kDtype>(a, row, inv_cap, chunks, t, s, partial, m, sum);
        // p32 = e / sum (kept in s) and dp, then sum(dp * p32), each product rounded before the sum as PyTorch's
        // (dp * p32).sum(-1) does.
        auto probabilities = [&](int64_t c) {
            if (chunks > 1) {
                load_chunk<kDtype>(a, row, inv_cap, c, t, s);
                exponentials(row, c, m, s);
            }
#pragma unroll
            for (int k = 0; k < kPer; ++k) {
                const int64_t j = column(c, k);
                s[k] = __fdiv_rn(s[k], sum);
                dp[k] = j < row.cols ? load_f32<kDtype>(a.grad_probs, row.base + j) : 0.0f;
            }
        };
        float dot = 0.0f;
        for (int64_t c = 0; c < chunks; ++c) {
            probabilities(c);
#pragma unroll
            for (int k = 0; k < kPer; ++k)
                if (column(c, k) < row.cols) dot = __fadd_rn(dot, __fmul_rn(dp[k], s[k]));
        }
        dot = block_reduce(dot, partial, SumOp{});
        for (int64_t c = 0; c < chunks; ++c) {
            if (chunks > 1) probabilities(c);
#pragma unroll
            for (int k = 0; k < kPer; ++k) {
                const int64_t j = column(c, k);
                if (j >= row.cols) continue;
                // ds * cap * (1 - tanh * tanh) / cap * scale, each op of the eager expression's backward rounded.
                const float ds = round_to<kDtype>(__fmul_rn(s[k], __fsub_rn(dp[k], dot)));
                const float scaled = round_to<kDtype>(__fmul_rn(ds, a.cap));
                const float one_minus = round_to<kDtype>(__fsub_rn(1.0f, round_to<kDtype>(__fmul_rn(t[k], t[k]))));
                const float chain = round_to<kDtype>(__fmul_rn(round_to<kDtype>(__fmul_rn(scaled, one_minus)), inv_cap));
                store_f32<kDtype>(a.probs, row.base + j, s[k]);
                store_f32<kDtype>(a.grad_scores, row.base + j, __fmul_rn(chain, a.scale));
            }
        }
    }
}

// One block per row, at most 2^20 blocks (the grid-stride loop covers the rest).
dim3 row_grid(const SoftcapSoftmaxArgs& a) { return dim3(grid_for(a.batch * a.heads * a.rows, 1)); }

}  // namespace

sloth_status softcap_softmax_forward(const char* fn, const SoftcapSoftmaxArgs& a, int32_t device, void* stream) {
    const float inv_cap = 1.0f / a.cap;  // PyTorch's CUDA division by a scalar: the float reciprocal, once
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        constexpr int kDtype = decltype(dt)::value;
        softcap_softmax_forward_kernel<kDtype><<<row_grid(a), kThreads, 0, s>>>(a, inv_cap);
        SLOTH_LAUNCH_CHECK(fn, "softcap_softmax_forward_kernel");
        return SLOTH_OK;
    });
}

sloth_status softcap_softmax_backward(const char* fn, const SoftcapSoftmaxArgs& a, int32_t device, void* stream) {
    const float inv_cap = 1.0f / a.cap;
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        constexpr int kDtype = decltype(dt)::value;
        softcap_softmax_backward_kernel<kDtype><<<row_grid(a), kThreads, 0, s>>>(a, inv_cap);
        SLOTH_LAUNCH_CHECK(fn, "softcap_softmax_backward_kernel");
        return SLOTH_OK;
    });
}

}  // namespace sloth::cuda
