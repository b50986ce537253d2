// Gated activations act(gate) * up (SwiGLU with silu, GeGLU with gelu_pytorch_tanh) forward and backward on the
// host (flat gate and up, or one packed [rows, 2 * cols] gate/up), with the roundings of the PyTorch expression
// `act(g) * u` in the input dtype and PyTorch's activation and activation-backward formulas in float32 (evaluated
// left to right as PyTorch's kernels write them; this file is built with -ffp-contract=off, so no product is fused
// into a sum).
#include "../src/backends.h"
#include "gate_activation.h"
#include "../src/status.h"
#include "float_convert.h"
#include "parallel.h"

#include <cmath>

namespace sloth::cpu {

namespace {

// d act / d g in float32, multiplied by dh as the activation-backward kernels do (dh * derivative).
float activation_backward(sloth_gate_activation act, float dh, float g) {
    if (act == SLOTH_GATE_SILU) {
        const float sig = 1.0f / (1.0f + std::exp(-g));
        return dh * sig * (1.0f + g * (1.0f - sig));
    }
    const float g_sq = g * g;
    const float g_cube = g_sq * g;
    const float inner = kGeluBeta * (g + kGeluKappa * g_cube);
    const float t = std::tanh(inner);
    const float left = 0.5f * g;
    const float right = 1.0f + t;
    const float left_derivative = 0.5f * right;
    const float tanh_derivative = 1.0f - t * t;
    const float inner_derivative = kGeluBeta * (1.0f + 3.0f * kGeluKappa * g_sq);
    const float right_derivative = left * tanh_derivative * inner_derivative;
    return dh * (left_derivative + right_derivative);
}

// Where element i of the product reads its gate and up values (and backward writes their gradients): flat arrays, or
// row i / cols of a packed [rows, 2 * cols] gate/up (SwigluArgs::cols > 0).
struct Operands {
    const void* gate;
    const void* up;
    void* grad_up;
    int64_t cols;
    explicit Operands(const SwigluArgs& a)
        : gate(a.gate), up(a.cols > 0 ? a.gate : a.up), grad_up(a.cols > 0 ? a.out : a.grad_up), cols(a.cols) {}
    int64_t gate_index(int64_t i) const { return cols > 0 ? (i / cols) * cols + i : i; }  // r * 2cols + c
    int64_t up_index(int64_t i) const { return cols > 0 ? gate_index(i) + cols : i; }
};

}  // namespace

sloth_status swiglu_forward(const char* fn, const SwigluArgs& a) {
    const sloth_dtype dt = a.dtype;
    const Operands op(a);
    SLOTH_CHECK(parallel_ranges(fn, a.n, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const float g = load_as_f32(op.gate, dt, op.gate_index(i)), u = load_as_f32(op.up, dt, op.up_index(i));
            const float act = round_to(dt, gate_activation(a.activation, g));
            store_from_f32(a.out, dt, i, act * u);
        }
    }));
    return SLOTH_OK;
}

sloth_status swiglu_backward(const char* fn, const SwigluArgs& a) {
    const sloth_dtype dt = a.dtype;
    const Operands op(a);
    SLOTH_CHECK(parallel_ranges(fn, a.n, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t gi = op.gate_index(i), ui = op.up_index(i);
            const float dy = load_as_f32(a.grad_out, dt, i);
            const float g = load_as_f32(op.gate, dt, gi), u = load_as_f32(op.up, dt, ui);
            const float act = round_to(dt, gate_activation(a.activation, g));
            const float dh = round_to(dt, dy * u);
            const float dg = activation_backward(a.activation, dh, g);
            store_from_f32(op.grad_up, dt, ui, dy * act);  // all reads above: outputs may alias inputs
            store_from_f32(a.out, dt, gi, dg);
        }
    }));
    return SLOTH_OK;
}

}  // namespace sloth::cpu
