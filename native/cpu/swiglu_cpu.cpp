// SwiGLU (silu(gate) * up) forward and backward on the host, with the roundings of the PyTorch expression
// `silu(g) * u` in the input dtype and PyTorch's silu / silu_backward formulas in float32.
#include "../src/backends.h"
#include "../src/status.h"
#include "float_convert.h"
#include "parallel.h"

#include <cmath>

namespace sloth::cpu {

sloth_status swiglu_forward(const char* fn, const SwigluArgs& a) {
    const sloth_dtype dt = a.dtype;
    SLOTH_CHECK(parallel_ranges(fn, a.n, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const float g = load_as_f32(a.gate, dt, i), u = load_as_f32(a.up, dt, i);
            const float silu = round_to(dt, g / (1.0f + std::exp(-g)));
            store_from_f32(a.out, dt, i, silu * u);
        }
    }));
    return SLOTH_OK;
}

sloth_status swiglu_backward(const char* fn, const SwigluArgs& a) {
    const sloth_dtype dt = a.dtype;
    SLOTH_CHECK(parallel_ranges(fn, a.n, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const float dy = load_as_f32(a.grad_out, dt, i);
            const float g = load_as_f32(a.gate, dt, i), u = load_as_f32(a.up, dt, i);
            const float e = std::exp(-g);
            const float silu = round_to(dt, g / (1.0f + e));
            const float sig = 1.0f / (1.0f + e);
            const float dsilu = round_to(dt, dy * u);
            const float dg = dsilu * sig * (1.0f + g * (1.0f - sig));
            store_from_f32(a.grad_up, dt, i, dy * silu);  // all reads above: outputs may alias inputs
            store_from_f32(a.out, dt, i, dg);
        }
    }));
    return SLOTH_OK;
}

}  // namespace sloth::cpu
