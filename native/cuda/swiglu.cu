// Gated activations act(gate) * up, forward and backward (SwiGLU: silu; GeGLU: gelu_pytorch_tanh), element-wise with a
// grid-stride loop (64-bit indices). Float32 arithmetic with the roundings of PyTorch's `act(g) * u` in the input
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

template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_forward_kernel(const void* gate, const void* up, int64_t n, void* out) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
        const float g = load_f32<kDtype>(gate, i), u = load_f32<kDtype>(up, i);
        const float act = round_to<kDtype>(gate_activation<kAct>(g));
        store_f32<kDtype>(out, i, __fmul_rn(act, u));
    }
}

template <int kDtype, int kAct>
__global__ void __launch_bounds__(kThreads) swiglu_backward_kernel(const void* grad_out, const void* gate,
                                                                    const void* up, int64_t n, void* grad_gate,
                                                                    void* grad_up) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
        const float dy = load_f32<kDtype>(grad_out, i);
        const float g = load_f32<kDtype>(gate, i), u = load_f32<kDtype>(up, i);
        const float act = round_to<kDtype>(gate_activation<kAct>(g));
        const float dh = round_to<kDtype>(__fmul_rn(dy, u));
        const float dg = activation_backward<kAct>(dh, g);
        store_f32<kDtype>(grad_up, i, __fmul_rn(dy, act));
        store_f32<kDtype>(grad_gate, i, dg);
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
            const float g = load_f32<kDtype>(gate_up, in_row + c), u = load_f32<kDtype>(gate_up, in_row + cols + c);
            const float act = round_to<kDtype>(gate_activation<kAct>(g));
            store_f32<kDtype>(out, out_row + c, __fmul_rn(act, u));
        }
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
            const float dy = load_f32<kDtype>(grad_out, out_row + c);
            const float g = load_f32<kDtype>(gate_up, in_row + c), u = load_f32<kDtype>(gate_up, in_row + cols + c);
            const float act = round_to<kDtype>(gate_activation<kAct>(g));
            const float dh = round_to<kDtype>(__fmul_rn(dy, u));
            const float dg = activation_backward<kAct>(dh, g);
            store_f32<kDtype>(grad_gate_up, in_row + cols + c, __fmul_rn(dy, act));
            store_f32<kDtype>(grad_gate_up, in_row + c, dg);
        }
    }
}

// Packed grid: enough x blocks for a row's columns, one y block per row up to CUDA's 65,535 limit.
dim3 packed_grid(const SwigluArgs& a) {
    const int64_t rows = a.n / a.cols;
    return dim3(grid_for(a.cols, kThreads), static_cast<unsigned>(rows < 65535 ? rows : 65535));
}

template <int kDtype, int kAct>
sloth_status launch_forward(const char* fn, const SwigluArgs& a, cudaStream_t stream) {
    if (a.cols > 0) {
        swiglu_packed_forward_kernel<kDtype, kAct><<<packed_grid(a), kThreads, 0, stream>>>(a.gate, a.n / a.cols,
                                                                                          a.cols, a.out);
        SLOTH_LAUNCH_CHECK(fn, "swiglu_packed_forward_kernel");
        return SLOTH_OK;
    }
    swiglu_forward_kernel<kDtype, kAct><<<dim3(grid_for(a.n, kThreads)), kThreads, 0, stream>>>(a.gate, a.up, a.n, a.out);
    SLOTH_LAUNCH_CHECK(fn, "swiglu_forward_kernel");
    return SLOTH_OK;
}

template <int kDtype, int kAct>
sloth_status launch_backward(const char* fn, const SwigluArgs& a, cudaStream_t stream) {
    if (a.cols > 0) {
        swiglu_packed_backward_kernel<kDtype, kAct><<<packed_grid(a), kThreads, 0, stream>>>(
            a.grad_out, a.gate, a.n / a.cols, a.cols, a.out);
        SLOTH_LAUNCH_CHECK(fn, "swiglu_packed_backward_kernel");
        return SLOTH_OK;
    }
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
