// act(g) of a gated MLP on the host (SwiGLU: silu; GeGLU: gelu_pytorch_tanh), in float32 with PyTorch's formulas
// evaluated left to right (the CPU files are built with -ffp-contract=off, so no product is fused into a sum). Shared
// by the training kernels' twin (swiglu_cpu.cpp) and the decoding engine's (decode_ops_cpu.cpp), so both round alike.
#pragma once

#include "slothsharp.h"

#include <cmath>

namespace sloth::cpu {

// sqrt(2 / pi) and 0.044715 as PyTorch's gelu kernels write them (computed in double, used as float).
inline constexpr float kGeluBeta = static_cast<float>(1.41421356237309504880 * 1.12837916709551257390 * 0.5);
inline constexpr float kGeluKappa = 0.044715f;

inline float gate_activation(sloth_gate_activation act, float g) {
    if (act == SLOTH_GATE_SILU) return g / (1.0f + std::exp(-g));
    const float g_cube = g * g * g;
    const float inner = kGeluBeta * (g + kGeluKappa * g_cube);
    return 0.5f * g * (1.0f + std::tanh(inner));
}

}  // namespace sloth::cpu
