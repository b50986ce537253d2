// Cross-entropy on a logits chunk, gradient written in place. One thread block per row:
//   pass 1 reads the row once (16-byte loads, two in flight per thread) and keeps an online max / sum-exp / sum of z
//   per thread, a block reduction gives lse, pass 2 re-reads the row from its END (the bytes pass 1 read last, the
//   likeliest to be still in L2) and overwrites it with the gradient.
// Threads per row: 1024 by default for large vocabularies (round 3, issue 15): with one or two rows per SM in flight,
// the rows being worked on (132 × 256 KB at V = 128256 bf16) fit the H100's 50 MB L2, so pass 2 re-reads mostly from
// L2, and a 1664-row chunk is ~6 waves of rows instead of ~2 (less idle tail). 256 (phase 1) and 512 stay selectable
// (sloth_cross_entropy_chunk_tuned) for the benchmark's comparison.
// Every element's gradient, the target column's included, is formed in float32 and rounded once on the store, so
// the target's "p - 1" is not lost to bf16 rounding. No allocation, no host sync; the stream orders it.
#include "cuda_common.cuh"
#include "ptx.cuh"

#include <math_constants.h>

#include <algorithm>

namespace sloth::cuda {
namespace {

// From this vocabulary on, rows get 1024 threads by default (smaller rows keep 256: a few KB per row).
constexpr int64_t kLargeVocab = 32768;

struct RowParams {
    float logit_scale, softcap, inv_softcap, label_smoothing, z_loss;
};

__device__ __forceinline__ float transform(float x, const RowParams& p) {
    float z = x * p.logit_scale;
    if (p.softcap > 0.0f) z = p.softcap * tanhf(z * p.inv_softcap);
    return z;
}

template <int kDtype> struct Elem;
template <> struct Elem<SLOTH_DTYPE_F32> {
    static constexpr int kVec = 4;
    __device__ static float load(const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }
    __device__ static void store(void* p, int64_t i, float v) { static_cast<float*>(p)[i] = v; }
    __device__ static void unpack(const uint4& q, float* v) {
        v[0] = __uint_as_float(q.x); v[1] = __uint_as_float(q.y); v[2] = __uint_as_float(q.z); v[3] = __uint_as_float(q.w);
    }
    __device__ static uint4 pack(const float* v) {
        return make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]), __float_as_uint(v[3]));
    }
};
template <> struct Elem<SLOTH_DTYPE_BF16> {
    static constexpr int kVec = 8;
    __device__ static float lo(uint32_t w) { return __uint_as_float(w << 16); }
    __device__ static float hi(uint32_t w) { return __uint_as_float(w & 0xFFFF0000u); }
    __device__ static float load(const void* p, int64_t i) {
        return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16);
    }
    __device__ static void store(void* p, int64_t i, float v) { static_cast<uint16_t*>(p)[i] = ptx::to_bf16_bits(v); }
    __device__ static void unpack(const uint4& q, float* v) {
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) { v[2 * k] = lo(w[k]); v[2 * k + 1] = hi(w[k]); }
    }
    __device__ static uint4 pack(const float* v) {
        return make_uint4(ptx::pack_bf16x2(v[0], v[1]), ptx::pack_bf16x2(v[2], v[3]), ptx::pack_bf16x2(v[4], v[5]),
                          ptx::pack_bf16x2(v[6], v[7]));
    }
};
template <> struct Elem<SLOTH_DTYPE_F16> {
    static constexpr int kVec = 8;
    __device__ static float h2f(uint32_t bits) {
        float f;
        asm("{ .reg .f16 h; mov.b16 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "h"(static_cast<uint16_t>(bits)));
        return f;
    }
    __device__ static float load(const void* p, int64_t i) { return h2f(static_cast<const uint16_t*>(p)[i]); }
    __device__ static void store(void* p, int64_t i, float v) { static_cast<uint16_t*>(p)[i] = ptx::to_f16_bits(v); }
    __device__ static void unpack(const uint4& q, float* v) {
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) { v[2 * k] = h2f(w[k] & 0xFFFFu); v[2 * k + 1] = h2f(w[k] >> 16); }
    }
    __device__ static uint4 pack(const float* v) {
        return make_uint4(ptx::pack_f16x2(v[0], v[1]), ptx::pack_f16x2(v[2], v[3]), ptx::pack_f16x2(v[4], v[5]),
                          ptx::pack_f16x2(v[6], v[7]));
    }
};

// Running (max, sum of exp(z - max)) merged without NaNs when one side is empty (max = -inf).
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
    if (m2 == -CUDART_INF_F) return;
    if (m == -CUDART_INF_F) { m = m2; s = s2; return; }
    const float mx = fmaxf(m, m2);
    s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
    m = mx;
}

// Butterfly reduction of (max, sum-exp) and the sum of z across a warp: every lane ends with the warp's totals.
__device__ __forceinline__ void warp_reduce(float& m, float& s, float& zsum) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float m2 = __shfl_xor_sync(0xFFFFFFFFu, m, off);
        const float s2 = __shfl_xor_sync(0xFFFFFFFFu, s, off);
        zsum += __shfl_xor_sync(0xFFFFFFFFu, zsum, off);
        merge(m, s, m2, s2);
    }
}

template <int kDtype, bool kVector, int kThreads>
__global__ void __launch_bounds__(kThreads) cross_entropy_kernel(
    void* __restrict__ logits, int64_t rows, int64_t vocab, int64_t row_stride, const int64_t* __restrict__ labels,
    int64_t ignore_index, RowParams prm, const float* __restrict__ row_grad_scale, float grad_scale,
    bool compute_grad, float* __restrict__ loss_out, float* __restrict__ lse_out) {
    using E = Elem<kDtype>;
    constexpr int V = E::kVec;
    constexpr int kWarps = kThreads / 32;
    static_assert(kWarps >= 1 && kWarps <= 32, "one warp reduces the per-warp partials");
    // One row per block iteration: grid = rows (a block per row), or fewer blocks that loop over the rows (the rows in
    // flight then fit L2, so pass 2 re-reads from L2; see rows_in_flight).
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        char* row = static_cast<char*>(logits) + r * row_stride * (kDtype == SLOTH_DTYPE_F32 ? 4 : 2);
        const int64_t y = labels[r];
        const int64_t nvec = kVector ? vocab / V : 0;
        const int64_t tid = threadIdx.x;

        if (y == ignore_index) {
            if (tid == 0) { loss_out[r] = 0.0f; lse_out[r] = 0.0f; }
            if (!compute_grad) continue;
            for (int64_t v = tid; v < nvec; v += kThreads) ptx::store_stream_v4(row + v * 16, 0u, 0u, 0u, 0u);
            for (int64_t j = nvec * V + tid; j < vocab; j += kThreads) E::store(row, j, 0.0f);
            continue;
        }
        const bool bad_label = y < 0 || y >= vocab;
        // Read the target logit before any thread can overwrite it in pass 2 (the reduction's barriers order them).
        float z_y = 0.0f;
        if (tid == 0 && !bad_label) z_y = transform(E::load(row, y), prm);

        // Pass 1: per thread a running max m and s = sum of exp(z - m), rescaled only when the max grows (one exp per
        // element); z summed for label smoothing.
        float m = -CUDART_INF_F, s = 0.0f, zsum = 0.0f;
        auto accumulate = [&](const uint4& q) {
            float x[V];
            E::unpack(q, x);
            float lm = -CUDART_INF_F;
    #pragma unroll
            for (int k = 0; k < V; ++k) { x[k] = transform(x[k], prm); lm = fmaxf(lm, x[k]); zsum += x[k]; }
            if (lm > m) { s *= __expf(m - lm); m = lm; }  // m = -inf: exp(-inf) = 0 and s is 0 anyway
            if (m != -CUDART_INF_F) {
    #pragma unroll
                for (int k = 0; k < V; ++k) s += __expf(x[k] - m);
            }
        };
        {
            int64_t v = tid;
            for (; v + kThreads < nvec; v += 2 * kThreads) {
                const uint4 q0 = *reinterpret_cast<const uint4*>(row + v * 16);
                const uint4 q1 = *reinterpret_cast<const uint4*>(row + (v + kThreads) * 16);
                accumulate(q0);
                accumulate(q1);
            }
            if (v < nvec) accumulate(*reinterpret_cast<const uint4*>(row + v * 16));
        }
        for (int64_t j = nvec * V + tid; j < vocab; j += kThreads) {
            const float z = transform(E::load(row, j), prm);
            zsum += z;
            merge(m, s, z, 1.0f);
        }
        // Block reduction of (m, s) and zsum: warp shuffles, then one warp over the per-warp partials.
        __shared__ float sh_m[kWarps], sh_s[kWarps], sh_z[kWarps];
        __shared__ float sh_lse;
        warp_reduce(m, s, zsum);
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
        if (lane == 0) { sh_m[warp] = m; sh_s[warp] = s; sh_z[warp] = zsum; }
        __syncthreads();
        if (warp == 0) {
            m = lane < kWarps ? sh_m[lane] : -CUDART_INF_F;
            s = lane < kWarps ? sh_s[lane] : 0.0f;
            zsum = lane < kWarps ? sh_z[lane] : 0.0f;
            warp_reduce(m, s, zsum);
            if (lane == 0) {
                const float lse = m + __logf(s);
                sh_lse = lse;
                const float eps = prm.label_smoothing;
                float loss = (1.0f - eps) * (lse - z_y) + eps * (lse - zsum / static_cast<float>(vocab)) +
                             prm.z_loss * lse * lse;
                if (bad_label) loss = CUDART_NAN_F;  // cannot raise from here: make the bad row impossible to miss
                loss_out[r] = loss;
                lse_out[r] = lse;
            }
        }
        __syncthreads();
        if (!compute_grad) continue;

        // Pass 2: dloss/dz_j = p_j (1 + 2 z_loss lse) - eps/V - (1 - eps)[j == y], times dz/dx and the row's scale.
        const float lse = sh_lse;
        const float g = row_grad_scale ? row_grad_scale[r] : grad_scale;
        const float p_coef = 1.0f + 2.0f * prm.z_loss * lse;
        const float smooth = prm.label_smoothing / static_cast<float>(vocab);
        const float hit = 1.0f - prm.label_smoothing;
        const float out_scale = prm.logit_scale * g;
        auto grad = [&](float x, bool target) {
            const float z = transform(x, prm);
            float dz = __expf(z - lse) * p_coef - smooth;
            if (target) dz -= hit;
            float d = dz * out_scale;
            if (prm.softcap > 0.0f) { const float t = z * prm.inv_softcap; d *= 1.0f - t * t; }
            return d;
        };
        auto write = [&](int64_t v, const uint4& q) {
            float x[V];
            E::unpack(q, x);
            const int64_t first = v * V;
            const int target = (y >= first && y < first + V) ? static_cast<int>(y - first) : -1;
    #pragma unroll
            for (int k = 0; k < V; ++k) x[k] = grad(x[k], k == target);
            const uint4 o = E::pack(x);
            ptx::store_stream_v4(row + v * 16, o.x, o.y, o.z, o.w);
        };
        // The scalar tail (the row's last elements) first, then the vectors from the row's end to its start, two
        // stripes of kThreads vectors at a time.
        for (int64_t j = nvec * V + tid; j < vocab; j += kThreads) E::store(row, j, grad(E::load(row, j), j == y));
        if (nvec > 0) {
            for (int64_t base = (nvec - 1) / kThreads * kThreads; base >= 0; base -= 2 * kThreads) {
                const int64_t v0 = base + tid;
                const int64_t v1 = base - kThreads + tid;
                const bool has0 = v0 < nvec;
                const bool has1 = base >= kThreads;
                uint4 q0 = make_uint4(0u, 0u, 0u, 0u), q1 = make_uint4(0u, 0u, 0u, 0u);
                if (has0) q0 = *reinterpret_cast<const uint4*>(row + v0 * 16);
                if (has1) q1 = *reinterpret_cast<const uint4*>(row + v1 * 16);
                if (has0) write(v0, q0);
                if (has1) write(v1, q1);
            }
        }
    }  // rows
}

template <int kDtype, int kThreads>
void launch_rows(const CrossEntropyArgs& a, int64_t blocks, bool vec, const RowParams& prm, cudaStream_t stream) {
    const dim3 grid(static_cast<unsigned>(blocks));
    if (vec)
        cross_entropy_kernel<kDtype, true, kThreads><<<grid, kThreads, 0, stream>>>(a.logits, a.rows, a.vocab,
            a.row_stride, a.labels, a.ignore_index, prm, a.row_grad_scale, a.grad_scale, a.compute_grad, a.loss_out,
            a.lse_out);
    else
        cross_entropy_kernel<kDtype, false, kThreads><<<grid, kThreads, 0, stream>>>(a.logits, a.rows, a.vocab,
            a.row_stride, a.labels, a.ignore_index, prm, a.row_grad_scale, a.grad_scale, a.compute_grad, a.loss_out,
            a.lse_out);
}

template <int kDtype>
sloth_status launch(const char* fn, const CrossEntropyArgs& a, cudaStream_t stream) {
    SLOTH_CHECK(require_one_launch(fn, a.rows));
    const int esize = dtype_size(static_cast<sloth_dtype>(kDtype));
    const bool vec = reinterpret_cast<uintptr_t>(a.logits) % 16 == 0 && (a.row_stride * esize) % 16 == 0;
    const RowParams prm{a.logit_scale, a.softcap, a.softcap > 0.0f ? 1.0f / a.softcap : 0.0f, a.label_smoothing, a.z_loss};
    const int threads = a.threads_per_row > 0 ? a.threads_per_row : (a.vocab >= kLargeVocab ? 1024 : 256);
    const int64_t blocks = a.rows_in_flight > 0 ? std::min<int64_t>(a.rows, a.rows_in_flight) : a.rows;
    if (threads == 1024) launch_rows<kDtype, 1024>(a, blocks, vec, prm, stream);
    else if (threads == 512) launch_rows<kDtype, 512>(a, blocks, vec, prm, stream);
    else launch_rows<kDtype, 256>(a, blocks, vec, prm, stream);
    SLOTH_LAUNCH_CHECK(fn, "cross_entropy_kernel");
    return SLOTH_OK;
}

}  // namespace

sloth_status cross_entropy_chunk(const char* fn, const CrossEntropyArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) { return launch<decltype(dt)::value>(fn, a, s); });
}

}  // namespace sloth::cuda
