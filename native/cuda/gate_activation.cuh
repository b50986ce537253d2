// act(g) of a gated MLP on the device (SwiGLU: silu; GeGLU: gelu_pytorch_tanh): float32, each product and sum a
// separate round-to-nearest operation in PyTorch's order, expf / tanhf / IEEE division as PyTorch's CUDA kernels use.
// Shared by swiglu.cu (training) and decode_ops.cu (decoding), so both give the same bits.
#pragma once

#include "dtype.cuh"
#include "slothsharp.h"

namespace sloth::cuda {

// sqrt(2 / pi) and 0.044715 as PyTorch's gelu kernels write them (computed in double, used as float).
inline constexpr float kGeluBeta = static_cast<float>(1.41421356237309504880 * 1.12837916709551257390 * 0.5);
inline constexpr float kGeluKappa = 0.044715f;

template <int kAct>  // sloth_gate_activation
__device__ __forceinline__ float gate_activation(float g) {
    if constexpr (kAct == SLOTH_GATE_SILU) {
        return __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
    } else {
        const float g_cube = __fmul_rn(__fmul_rn(g, g), g);
        const float inner = __fmul_rn(kGeluBeta, __fadd_rn(g, __fmul_rn(kGeluKappa, g_cube)));
        return __fmul_rn(__fmul_rn(0.5f, g), __fadd_rn(1.0f, tanhf(inner)));
    }
}

// The same, chosen at run time (the decoding kernels take the family's activation as an argument).
__device__ __forceinline__ float gate_activation(sloth_gate_activation act, float g) {
    return act == SLOTH_GATE_SILU ? gate_activation<SLOTH_GATE_SILU>(g) : gate_activation<SLOTH_GATE_GELU_TANH>(g);
}

// A gated output of the decoding kernels from the gate g and the up value u, both already rounded to the dtype:
// act(g) rounded to the dtype, times u (the caller stores the product in the dtype). The separate gated activation
// (decode_ops.cu) and the kernels that fuse it (the NF4 GEMVs' and the wide GEMM's gated forms) all compute it here,
// so they give the same bits.
template <int kDtype>
__device__ __forceinline__ float gated_product(sloth_gate_activation act, float g, float u) {
    return __fmul_rn(round_to<kDtype>(gate_activation(act, g)), u);
}

}  // namespace sloth::cuda
