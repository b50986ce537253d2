// bitsandbytes' two code searches of NF4 quantization, shared by the CPU kernel (cpu/nf4_cpu.cpp) and the CUDA kernel
// (cuda/nf4_quantize.cu): one definition, so both backends pick the same codes bit for bit. The CPU build has no
// CUDA compiler, hence the qualifier macro.
#pragma once
#include <cstdint>

#if defined(__CUDACC__) || defined(__CUDA__)  // nvcc, clang's CUDA mode (include after the CUDA runtime headers)
#define SLOTH_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SLOTH_HOST_DEVICE inline
#endif

namespace sloth {

// The NF4 decision tree: thresholds are the midpoints between neighbouring NF4 codes.
SLOTH_HOST_DEVICE uint8_t nf4_code(float x) {
    if (x > 0.03979014977812767f) {
        if (x > 0.3893125355243683f) {
            if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 0b1111 : 0b1110;
            return x > 0.5016634166240692f ? 0b1101 : 0b1100;
        }
        if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 0b1011 : 0b1010;
        return x > 0.1202552504837513f ? 0b1001 : 0b1000;
    }
    if (x > -0.33967943489551544f) {
        if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 0b0111 : 0b0110;
        return x > -0.23460740596055984f ? 0b0101 : 0b0100;
    }
    if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 0b0011 : 0b0010;
    return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

// The 8-bit code search (dQuantize, non-stochastic): a 7-step binary search over the sorted 256-entry map, then
// rounding to the nearer neighbour by comparing against the float midpoint. (a + b) * 0.5f has no fused form, so
// host and device round it the same way without intrinsics.
SLOTH_HOST_DEVICE uint8_t dynamic_code(const float* code, float x) {
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f;
    float val = code[pivot];
    for (int step = 64; step > 0; step >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += step;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= step;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[upper_pivot];
    if (lower_pivot == 0) lower = code[lower_pivot];
    if (x > val) {
        const float midpoint = (upper + val) * 0.5f;
        return static_cast<uint8_t>(x > midpoint ? upper_pivot : pivot);
    }
    const float midpoint = (lower + val) * 0.5f;
    return static_cast<uint8_t>(x < midpoint ? lower_pivot : pivot);
}

}  // namespace sloth
