// Gated activations act(gate) * up, forward and backward (SwiGLU: silu; GeGLU: gelu_pytorch_tanh), element-wise with a
// grid-stride loop (64-bit indices), on 16-byte vectors where the pointers and counts allow. Float32 arithmetic with the roundings of PyTorch's `act(g) * u` in the input
// dtype; expf, tanhf and IEEE division (not __expf / __fdividef / tanh.approx), as PyTorch's CUDA silu and gelu use.
// The activation formulas follow PyTorch's kernels operation for operation, left to right, each product and sum a
// separate round-to-nearest operation (the CPU twin's order). Outputs may alias inputs: each element is read, then
// written, by one thread. The activation is a template parameter: one kernel per (dtype, activation).
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "gate_activation.cuh"

namespace sloth::cuda {
namespace {

constexpr int kThreads = 256;

// dh * act'(g), as PyTorch's silu_backward / gelu_backward(approximate="tanh") compute it.
template <int kAct>
__device__ __forceinline__ float activation_backward(float dh, float g) {
    if constexpr (kAct == SLOTH_GATE_SILU) {
        const float sig = __frcp_rn(__fadd_rn(1.0f, expf(-g)));
        return __fmul_rn(__fmul_rn(dh, sig), __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sig))));
    } else {
        const float g_sq = __fmul_rn(g, g);
        const float g_cube = __fmul_rn(g_sq, g);
        const float inner = __fmul_rn(kGeluBeta, __fadd_rn(g, __fmul_rn(kGeluKappa, g_cube)));
        const float t = tanhf(inner);
        const float left = __fmul_rn(0.5f, g);
        const float right = __fadd_rn(1.0f, t);
        const float left_derivative = __fmul_rn(0.5f, right);
        const float tanh_derivative = __fsub_rn(1.0f, __fmul_rn(t, t));
        const float inner_derivative =
            __fmul_rn(kGeluBeta, __fadd_rn(1.0f, __fmul_rn(__fmul_rn(3.0f, kGeluKappa), g_sq)));
        const float right_derivative = __fmul_rn(__fmul_rn(left, tanh_derivative), inner_derivative);
        return __fmul_rn(dh, __fadd_rn(left_derivative, right_derivative));
    }
}

// One element of the forward (act(g) rounded, times u) and of the backward (grad_gate, grad_up): every kernel below,
// scalar or vector, flat or packed, computes each element with these, so all give the same bits.
template <int kDtype, int kAct>
__device__ __forceinline__ float forward_value(float g, float u) {
    return __fmul_rn(round_to<kDtype>(gate_activation<kAct>(g)), u);
}

template <int kDtype, int kAct>
__device__ __forceinline__ void backward_values(float dy, float g, float u, float& dg, float& du) {
    const float act = round_to<kDtype>(gate_activation<kAct>(g));
    const float dh = round_to<kDtype>(__fmul_rn(dy, u));
    dg = activation_backward<kAct>(dh, g);
    du = __fmul_rn(dy, act);
}

// 16-byte vectors: kVec values of the dtype per load and store (8 for 16-bit types, 4 for float32). The scalar kernels
// reached ~1.6-1.8 TB/s on the H100 (round 15's profile: 256 us for a packed forward over [8192, 2 x 8192] bf16).
template <int kDtype>
constexpr int kVec = kDtype == SLOTH_DTYPE_F32 ? 4 : 8;

template <int kDtype, int kAct>
__device__ __forceinline__ uint4 forward_vector(uint4 g, uint4 u) {
    uint4 out;
#pragma unroll
    for (int j = 0; j < kVec<kDtype>; ++j)
        store_f32<kDtype>(&out, j, forward_value<kDtype, kAct>(load_f32<kDtype>(&g, j), load_f32<kDtype>(&u, j)));
    return out;
}

template <int kDtype, int kAct>
__device__ __forceinline__ void backward_vector(uint4 dy, uint4 g, uint4 u, uint4& dg, uint4& du) {
#pragma unroll
    for (int j = 0; j < kVec<kDtype>; ++j) {
        float dgj, duj;
        backward_values<kDtype, kAct>(load_f32<kDtype>(&dy, j), load_f32<kDtype>(&g, j), load_f32<kDtype>(&u, j), dgj, duj);
        store_f32<kDtype>(&dg, j, dgj);
        store_f32<kDtype>(&du, j, duj);
    }
}

template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_forward_kernel(const void* gate, const void* up, int64_t n, void* out) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
        store_f32<kDtype>(out, i, forward_value<kDtype, kAct>(load_f32<kDtype>(gate, i), load_f32<kDtype>(up, i)));
    }
}

// The flat forward on 16-byte vectors: n_vec = n / kVec vectors (all pointers 16-byte aligned, n a multiple of kVec).
template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_forward_vec_kernel(const uint4* gate, const uint4* up, int64_t n_vec,
                                                                      uint4* out) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t v = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; v < n_vec; v += stride)
        out[v] = forward_vector<kDtype, kAct>(gate[v], up[v]);
}

template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_backward_kernel(const void* grad_out, const void* gate,
                                                                    const void* up, int64_t n, void* grad_gate,
                                                                    void* grad_up) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
        float dg, du;
        backward_values<kDtype, kAct>(load_f32<kDtype>(grad_out, i), load_f32<kDtype>(gate, i), load_f32<kDtype>(up, i), dg, du);
        store_f32<kDtype>(grad_up, i, du);
        store_f32<kDtype>(grad_gate, i, dg);
    }
}

template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_backward_vec_kernel(const uint4* grad_out, const uint4* gate,
                                                                       const uint4* up, int64_t n_vec, uint4* grad_gate,
                                                                       uint4* grad_up) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t v = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; v < n_vec; v += stride) {
        uint4 dg, du;
        backward_vector<kDtype, kAct>(grad_out[v], gate[v], up[v], dg, du);  // all reads first: outputs may alias
        grad_up[v] = du;
        grad_gate[v] = dg;
    }
}

// The packed form: gate_up [rows, 2 * cols] (gate half, then up half, per row). blockIdx.y walks the rows (grid-stride
// past 65,535), blockIdx.x and the threads the columns, so a warp reads consecutive values of one half. Each element's
// arithmetic is the flat kernels' (the same bits); backward writes grad_gate_up in gate_up's layout.
template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_packed_forward_kernel(const void* gate_up, int64_t rows,
                                                                          int64_t cols, void* out) {
    const int64_t col_stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const int64_t in_row = r * 2 * cols, out_row = r * cols;
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; c < cols; c += col_stride) {
            store_f32<kDtype>(out, out_row + c,
                              forward_value<kDtype, kAct>(load_f32<kDtype>(gate_up, in_row + c),
                                                          load_f32<kDtype>(gate_up, in_row + cols + c)));
        }
    }
}

// The packed forward on 16-byte vectors: cols_vec = cols / kVec vectors per half row (gate_up and out 16-byte
// aligned, cols a multiple of kVec).
template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_packed_forward_vec_kernel(const uint4* gate_up, int64_t rows,
                                                                              int64_t cols_vec, uint4* out) {
    const int64_t col_stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const uint4* in = gate_up + r * 2 * cols_vec;
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; c < cols_vec; c += col_stride)
            out[r * cols_vec + c] = forward_vector<kDtype, kAct>(in[c], in[cols_vec + c]);
    }
}

template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_packed_backward_kernel(const void* grad_out, const void* gate_up,
                                                                           int64_t rows, int64_t cols,
                                                                           void* grad_gate_up) {
    const int64_t col_stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const int64_t in_row = r * 2 * cols, out_row = r * cols;
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; c < cols; c += col_stride) {
            float dg, du;
            backward_values<kDtype, kAct>(load_f32<kDtype>(grad_out, out_row + c), load_f32<kDtype>(gate_up, in_row + c),
                                          load_f32<kDtype>(gate_up, in_row + cols + c), dg, du);
            store_f32<kDtype>(grad_gate_up, in_row + cols + c, du);
            store_f32<kDtype>(grad_gate_up, in_row + c, dg);
        }
    }
}

template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_packed_backward_vec_kernel(const uint4* grad_out, const uint4* gate_up,
                                                                               int64_t rows, int64_t cols_vec,
                                                                               uint4* grad_gate_up) {
    const int64_t col_stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const int64_t in_row = r * 2 * cols_vec;
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; c < cols_vec; c += col_stride) {
            uint4 dg, du;
            backward_vector<kDtype, kAct>(grad_out[r * cols_vec + c], gate_up[in_row + c], gate_up[in_row + cols_vec + c],
                                          dg, du);  // all reads first: grad_gate_up may alias gate_up
            grad_gate_up[in_row + cols_vec + c] = du;
            grad_gate_up[in_row + c] = dg;
        }
    }
}

// Packed grid: enough x blocks for `per_row` items of a row, one y block per row up to CUDA's 65,535 limit.
dim3 packed_grid(int64_t rows, int64_t per_row) {
    return dim3(grid_for(per_row, kThreads), static_cast<unsigned>(rows < 65535 ? rows : 65535));
}

// The vector kernels when every pointer is 16-byte aligned and the counts (n flat, cols packed) are whole vectors.
template <int kDtype>
bool vectorizable(const SwigluArgs& a, bool backward) {
    const auto aligned = [](const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    const int64_t count = a.cols > 0 ? a.cols : a.n;
    return count % kVec<kDtype> == 0 && aligned(a.gate) && aligned(a.up) && aligned(a.out) &&
           (!backward || (aligned(a.grad_out) && aligned(a.grad_up)));
}

template <int kDtype, int kAct>
sloth_status launch_forward(const char* fn, const SwigluArgs& a, cudaStream_t stream) {
    constexpr int v = kVec<kDtype>;
    const bool vec = vectorizable<kDtype>(a, false);
    if (a.cols > 0) {
        const int64_t rows = a.n / a.cols;
        if (vec)
            swiglu_packed_forward_vec_kernel<kDtype, kAct><<<packed_grid(rows, a.cols / v), kThreads, 0, stream>>>(
                static_cast<const uint4*>(a.gate), rows, a.cols / v, static_cast<uint4*>(a.out));
        else
            swiglu_packed_forward_kernel<kDtype, kAct><<<packed_grid(rows, a.cols), kThreads, 0, stream>>>(
                a.gate, rows, a.cols, a.out);
        SLOTH_LAUNCH_CHECK(fn, "swiglu_packed_forward_kernel");
        return SLOTH_OK;
    }
    if (vec)
        swiglu_forward_vec_kernel<kDtype, kAct><<<dim3(grid_for(a.n / v, kThreads)), kThreads, 0, stream>>>(
            static_cast<const uint4*>(a.gate), static_cast<const uint4*>(a.up), a.n / v, static_cast<uint4*>(a.out));
    else
        swiglu_forward_kernel<kDtype, kAct><<<dim3(grid_for(a.n, kThreads)), kThreads, 0, stream>>>(a.gate, a.up, a.n,
                                                                                                    a.out);
    SLOTH_LAUNCH_CHECK(fn, "swiglu_forward_kernel");
    return SLOTH_OK;
}

template <int kDtype, int kAct>
sloth_status launch_backward(const char* fn, const SwigluArgs& a, cudaStream_t stream) {
    constexpr int v = kVec<kDtype>;
    const bool vec = vectorizable<kDtype>(a, true);
    if (a.cols > 0) {
        const int64_t rows = a.n / a.cols;
        if (vec)
            swiglu_packed_backward_vec_kernel<kDtype, kAct><<<packed_grid(rows, a.cols / v), kThreads, 0, stream>>>(
                static_cast<const uint4*>(a.grad_out), static_cast<const uint4*>(a.gate), rows, a.cols / v,
                static_cast<uint4*>(a.out));
        else
            swiglu_packed_backward_kernel<kDtype, kAct><<<packed_grid(rows, a.cols), kThreads, 0, stream>>>(
                a.grad_out, a.gate, rows, a.cols, a.out);
        SLOTH_LAUNCH_CHECK(fn, "swiglu_packed_backward_kernel");
        return SLOTH_OK;
    }
    if (vec)
        swiglu_backward_vec_kernel<kDtype, kAct><<<dim3(grid_for(a.n / v, kThreads)), kThreads, 0, stream>>>(
            static_cast<const uint4*>(a.grad_out), static_cast<const uint4*>(a.gate), static_cast<const uint4*>(a.up),
            a.n / v, static_cast<uint4*>(a.out), static_cast<uint4*>(a.grad_up));
    else
        swiglu_backward_kernel<kDtype, kAct><<<dim3(grid_for(a.n, kThreads)), kThreads, 0, stream>>>(
            a.grad_out, a.gate, a.up, a.n, a.out, a.grad_up);
    SLOTH_LAUNCH_CHECK(fn, "swiglu_backward_kernel");
    return SLOTH_OK;
}

}  // namespace

sloth_status swiglu_forward(const char* fn, const SwigluArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        constexpr int kDtype = decltype(dt)::value;
        return a.activation == SLOTH_GATE_GELU_TANH ? launch_forward<kDtype, SLOTH_GATE_GELU_TANH>(fn, a, s)
                                                    : launch_forward<kDtype, SLOTH_GATE_SILU>(fn, a, s);
    });
}

sloth_status swiglu_backward(const char* fn, const SwigluArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype, [&](auto dt, cudaStream_t s) {
        constexpr int kDtype = decltype(dt)::value;
        return a.activation == SLOTH_GATE_GELU_TANH ? launch_backward<kDtype, SLOTH_GATE_GELU_TANH>(fn, a, s)
                                                    : launch_backward<kDtype, SLOTH_GATE_SILU>(fn, a, s);
    });
}

}  // namespace sloth::cuda
