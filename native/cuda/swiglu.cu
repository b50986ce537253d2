// SwiGLU forward and backward, element-wise with a grid-stride loop (64-bit indices). Float32 arithmetic with the
// roundings of PyTorch's `silu(g) * u` in the input dtype; expf and IEEE division (not __expf / __fdividef), as
// PyTorch's CUDA silu uses. Outputs may alias inputs: each element is read, then written, by one thread.
#include "cuda_common.cuh"
#include "dtype.cuh"

namespace sloth::cuda {
namespace {

constexpr int kThreads = 256;

template <int kDtype>
__global__ void __launch_bounds__(kThreads) swiglu_forward_kernel(const void* gate, const void* up, int64_t n, void* out) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
        const float g = load_f32<kDtype>(gate, i), u = load_f32<kDtype>(up, i);
        const float silu = round_to<kDtype>(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))));
        store_f32<kDtype>(out, i, __fmul_rn(silu, u));
    }
}

template <int kDtype>
__global__ void __launch_bounds__(kThreads) swiglu_backward_kernel(const void* grad_out, const void* gate,
                                                                    const void* up, int64_t n, void* grad_gate,
                                                                    void* grad_up) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
        const float dy = load_f32<kDtype>(grad_out, i);
        const float g = load_f32<kDtype>(gate, i), u = load_f32<kDtype>(up, i);
        const float e = expf(-g);
        const float silu = round_to<kDtype>(__fdiv_rn(g, __fadd_rn(1.0f, e)));
        const float sig = __frcp_rn(__fadd_rn(1.0f, e));
        const float dsilu = round_to<kDtype>(__fmul_rn(dy, u));
        const float dg = __fmul_rn(__fmul_rn(dsilu, sig), __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sig))));
        store_f32<kDtype>(grad_up, i, __fmul_rn(dy, silu));
        store_f32<kDtype>(grad_gate, i, dg);
    }
}

template <int kDtype>
sloth_status launch_forward(const char* fn, const SwigluArgs& a, cudaStream_t stream) {
    swiglu_forward_kernel<kDtype><<<dim3(grid_for(a.n, kThreads)), kThreads, 0, stream>>>(a.gate, a.up, a.n, a.out);
    SLOTH_LAUNCH_CHECK(fn, "swiglu_forward_kernel");
    return SLOTH_OK;
}

template <int kDtype>
sloth_status launch_backward(const char* fn, const SwigluArgs& a, cudaStream_t stream) {
    swiglu_backward_kernel<kDtype><<<dim3(grid_for(a.n, kThreads)), kThreads, 0, stream>>>(a.grad_out, a.gate, a.up, a.n,
                                                                                            a.out, a.grad_up);
    SLOTH_LAUNCH_CHECK(fn, "swiglu_backward_kernel");
    return SLOTH_OK;
}

}  // namespace

sloth_status swiglu_forward(const char* fn, const SwigluArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) { return launch_forward<decltype(dt)::value>(fn, a, s); });
}

sloth_status swiglu_backward(const char* fn, const SwigluArgs& a, int32_t device, void* stream) {
    return launch_for_dtype(fn, device, stream, a.dtype,
                            [&](auto dt, cudaStream_t s) { return launch_backward<decltype(dt)::value>(fn, a, s); });
}

}  // namespace sloth::cuda
