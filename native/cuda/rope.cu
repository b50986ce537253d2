// Rotary position embedding (rotate_half convention), forward or its gradient (inverse = 1), on the first rotary_dim
// features of each head. One lane per work item of a head vector: items i < rotary_dim / 2 are the pairs (it reads
// x[i] and x[i + half] and writes both, so out may equal x), the items after them copy one pass-through feature
// (rotary_dim..head_dim-1) bit for bit; in place (out == x) there is nothing to copy and those items do not exist.
// Each product and sum is rounded to the dtype as PyTorch's `x * cos + rotate_half(x) * sin` does in that dtype.
#include "cuda_common.cuh"
#include "dtype.cuh"

#include <type_traits>

namespace sloth::cuda {
namespace {

// A block is kRowWarps warps; each warp walks whole head vectors (rows), its lanes the row's work items. A row's
// position and batch come from two divisions per lane per row; the first version had one thread per item and paid
// three 64-bit divisions per item, which made it compute-bound (134 us for Phi-4-mini's q at 8 x 1024 tokens, about
// a third of the DRAM time its 100 MB need).
constexpr int kRowWarps = 8;
constexpr int kThreads = 32 * kRowWarps;

template <int kDtype, bool kInverse>
__global__ void __launch_bounds__(kThreads) rope_kernel(const void* x, const void* __restrict__ cos_t,
                                                         const void* __restrict__ sin_t, int64_t rows, int64_t per_row,
                                                         int64_t half, int64_t head_dim, int64_t heads, int64_t seq,
                                                         bool bthd, bool cos_broadcast, void* out) {
    using Bits = std::conditional_t<kDtype == SLOTH_DTYPE_F32, uint32_t, uint16_t>;
    const int64_t row_stride = static_cast<int64_t>(gridDim.x) * kRowWarps;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.y; r < rows; r += row_stride) {
        const int64_t xs = r * head_dim;
        const int64_t t = bthd ? (r / heads) % seq : r % seq;
        const int64_t b = r / (heads * seq);
        const int64_t cs = ((cos_broadcast ? 0 : b) * seq + t) * (2 * half);
        for (int64_t i = threadIdx.x; i < per_row; i += 32) {
            if (i >= half) {  // a pass-through feature
                const int64_t j = xs + 2 * half + (i - half);
                static_cast<Bits*>(out)[j] = static_cast<const Bits*>(x)[j];
                continue;
            }
            const float v1 = load_f32<kDtype>(x, xs + i), v2 = load_f32<kDtype>(x, xs + i + half);
            const float c1 = load_f32<kDtype>(cos_t, cs + i), c2 = load_f32<kDtype>(cos_t, cs + i + half);
            const float s1 = load_f32<kDtype>(sin_t, cs + i), s2 = load_f32<kDtype>(sin_t, cs + i + half);
            float o1, o2;
            if constexpr (!kInverse) {
                o1 = __fsub_rn(round_to<kDtype>(__fmul_rn(v1, c1)), round_to<kDtype>(__fmul_rn(v2, s1)));
                o2 = __fadd_rn(round_to<kDtype>(__fmul_rn(v2, c2)), round_to<kDtype>(__fmul_rn(v1, s2)));
            } else {
                o1 = __fadd_rn(round_to<kDtype>(__fmul_rn(v1, c1)), round_to<kDtype>(__fmul_rn(v2, s2)));
                o2 = __fsub_rn(round_to<kDtype>(__fmul_rn(v2, c2)), round_to<kDtype>(__fmul_rn(v1, s1)));
            }
            store_f32<kDtype>(out, xs + i, o1);
            store_f32<kDtype>(out, xs + i + half, o2);
        }
    }
}

template <int kDtype>
sloth_status launch(const char* fn, const RopeArgs& a, cudaStream_t stream) {
    const int64_t half = a.rotary_dim / 2;
    // Work items per head vector: the pairs, then (out of place) one per pass-through feature.
    const int64_t per_row = half + (a.out == a.x ? 0 : a.head_dim - a.rotary_dim);
    const int64_t rows = a.batch * a.heads * a.seq;
    const dim3 grid(grid_for(rows, kRowWarps)), block(32, kRowWarps);
    const bool bthd = a.layout == SLOTH_ROPE_BTHD, bcast = a.cos_batch == 1;
    if (a.inverse)
        rope_kernel<kDtype, true><<<grid, block, 0, stream>>>(a.x, a.cos, a.sin, rows, per_row, half, a.head_dim,
                                                              a.heads, a.seq, bthd, bcast, a.out);
    else
        rope_kernel<kDtype, false><<<grid, block, 0, stream>>>(a.x, a.cos, a.sin, rows, per_row, half, a.head_dim,
                                                               a.heads, a.seq, bthd, bcast, a.out);
    SLOTH_LAUNCH_CHECK(fn, "rope_kernel");
    return SLOTH_OK;
}

}  // namespace

sloth_status rope(const char* fn, const RopeArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) { return launch<decltype(dt)::value>(fn, a, s); });
}

}  // namespace sloth::cuda
