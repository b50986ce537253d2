// The gated activation of one element, shared by decode_ops.cu's gated_act_kernel and the NF4 GEMV's gated epilogue
// (nf4_gemv.cu) so that both run the same float operations and give the same bits: act(g) rounded to the dtype
// (PyTorch stores act(gate) in the dtype), times u; the caller's store rounds the product.
#pragma once
#include "dtype.cuh"
#include "slothsharp.h"

namespace sloth::cuda {

template <int kDtype>
__device__ __forceinline__ float gated_value(sloth_gate_activation activation, float g, float u) {
    // GELU (tanh form): 0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3))); sqrt(2) * (2 / sqrt(pi)) / 2 = sqrt(2 / pi).
    const float beta = static_cast<float>(1.41421356237309504880 * 1.12837916709551257390 * 0.5), kappa = 0.044715f;
    float act;
    if (activation == SLOTH_GATE_SILU) {
        act = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
    } else {
        const float inner = __fmul_rn(beta, __fadd_rn(g, __fmul_rn(kappa, __fmul_rn(__fmul_rn(g, g), g))));
        act = __fmul_rn(__fmul_rn(0.5f, g), __fadd_rn(1.0f, tanhf(inner)));
    }
    return __fmul_rn(round_to<kDtype>(act), u);
}

}  // namespace sloth::cuda
